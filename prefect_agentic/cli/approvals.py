"""``agentic approvals``, ``approve``, ``reject``, ``request-changes``: answer gates from a shell.

They talk to the Prefect API named by ``PREFECT_API_URL`` (the server the
paused runs report to). The approver is the user name of this process unless
``--as`` names someone else (open-source Prefect has no user identity). The
terminal answerer asks the same question inside an interactive ``agentic run``.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Annotated, Any, Optional
from uuid import UUID

import typer
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.flow_runs import resume_flow_run
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.prompt import Prompt

from prefect_agentic.cli.runs import RunIdError, resolve_run_id
from prefect_agentic.gates import ApprovalAnswer, GateQuestion, use_answerer
from prefect_agentic.gates.answer import GateSummary, read_review
from prefect_agentic.gates.form_copy import restore_lost_form, stored_input

err = Console(stderr=True)
out = Console()
approvals_app = typer.Typer(help="Runs waiting at an approval gate.", no_args_is_help=True)
AS_HELP = "Who answers (recorded with the decision); default: your user name."
Reason = Annotated[str, typer.Option(help="Why (recorded with the decision).")]


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _waiting_gates() -> Iterator[tuple[FlowRun, GateSummary | None]]:
    """Flow runs paused at an approval gate, oldest first, with their summaries."""
    with get_client(sync_client=True) as client:
        paused = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
        for run in sorted(paused, key=lambda r: r.state.timestamp if r.state else datetime.min):
            key = run.state.state_details.pause_key if run.state else None
            if key and key.startswith("approve-"):
                if restore_lost_form(run):
                    err.print(f"flow run {run.id}: its process ended before Prefect saved the answer form; "
                              "restored it from the gate's copy (the Prefect UI can resume the run again)",
                              highlight=False, markup=False, soft_wrap=True)
                yield run, _summary(client, run.id, key)


def _summary(client: SyncPrefectClient, flow_run_id: UUID, pause_key: str) -> GateSummary | None:
    """The gate's summary, or None if it saved none (listed all the same, as "no gate summary")."""
    raw = stored_input(client, flow_run_id, GateSummary.input_key(pause_key))
    return GateSummary.model_validate_json(raw) if raw is not None else None


def _find(run_ref: str) -> FlowRun:
    """The paused gated flow run ``run_ref`` names: its id, or a unique start of it."""
    waiting = {str(run.id): run for run, _ in _waiting_gates()}
    try:
        return waiting[resolve_run_id(run_ref, waiting, among="flow runs waiting at an approval gate",
                                      hint="`agentic approvals list` shows them")]
    except RunIdError as exc:
        raise _fail(str(exc)) from None


@approvals_app.command("list")
def list_approvals(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable list.")] = False,
) -> None:
    """Flow runs waiting for an approval, with what each gate is about."""
    rows = list(_waiting_gates())
    if as_json:
        typer.echo(json.dumps([{"flow_run_id": str(run.id), "flow_run": run.name,
                                **(summary.model_dump(mode="json") if summary else {})}
                               for run, summary in rows], indent=2))
        return
    if not rows:
        out.print("No flow run is waiting for an approval.")
        return
    now = datetime.now(timezone.utc)
    for run, s in rows:
        if s is None:
            out.print(f"{run.id}  {run.name} (no gate summary)", highlight=False, markup=False)
            continue
        waited = (now - s.asked_at).total_seconds()
        out.print(f"{run.id}  {s.plan} · step {s.step} ({s.tool}) · waiting {waited:.0f}s, "
                  f"times out in {max(0.0, s.timeout_seconds - waited):.0f}s\n"
                  f"  $ {s.command}\n  risk: {s.risk}", highlight=False, markup=False, soft_wrap=True)


@approvals_app.command("show")
def show(run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Flow run id (or its start).")]) -> None:
    """The review of a waiting gate, as the Prefect UI's form shows it."""
    run = _find(run_ref)
    try:
        review = read_review(run)
    except PrefectHTTPStatusError as exc:
        raise _fail(f"flow run {run.id} shows no review: {exc}") from None
    out.print(Markdown(review))
    out.print(f"\nflow run {run.id}: `agentic approve {run.id}` or `agentic reject {run.id} --reason …`",
              highlight=False, markup=False)


def _answer(run_ref: str, decision: str, approver: str | None, reason: str, instructions: str = "") -> None:
    run = _find(run_ref)
    answer = ApprovalAnswer(decision=decision, approver=approver or getpass.getuser(),  # type: ignore[arg-type]
                            reason=reason, instructions=instructions)
    problem = answer.problem()
    if problem:
        raise _fail(problem)
    try:
        resume_flow_run(run.id, run_input=answer.model_dump(mode="json"))
    except Exception as exc:  # noqa: BLE001 - the API's refusal, shown as it came
        raise _fail(f"flow run {run.id} did not take the answer: {exc}") from None
    out.print(f"{decision}: flow run {run.id} ({run.name}) by {answer.approver}", highlight=False)


def approve(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Flow run id (or its start).")],
    reason: Reason = "",
    approver: Annotated[Optional[str], typer.Option("--as", help=AS_HELP)] = None,  # noqa: UP045
) -> None:
    """Approve the step a flow run is waiting at: it runs, and the run goes on."""
    _answer(run_ref, "approve", approver, reason)


def reject(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Flow run id (or its start).")],
    reason: Annotated[str, typer.Option(help="Why (required; recorded with the decision).")],
    approver: Annotated[Optional[str], typer.Option("--as", help=AS_HELP)] = None,  # noqa: UP045
) -> None:
    """Reject the step: the run stops before it and keeps its work."""
    _answer(run_ref, "reject", approver, reason)


def request_changes(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Flow run id (or its start).")],
    reason: Reason = "",
    instructions: Annotated[str, typer.Option(help="What the step should do instead.")] = "",
    approver: Annotated[Optional[str], typer.Option("--as", help=AS_HELP)] = None,  # noqa: UP045
) -> None:
    """Ask for changes: the LLM planner re-plans with your words (the run stops without one)."""
    _answer(run_ref, "request_changes", approver, reason, instructions)


class TerminalAnswerer:
    """Asks at the terminal of an interactive ``agentic run`` (the review, then the decision).

    ``quiet`` is entered while asking, so the live progress display does not
    draw over the question.
    """

    def __init__(self, console: Console, quiet: Callable[[], AbstractContextManager[Any]]) -> None:
        self.console = console
        self.quiet = quiet

    def __call__(self, question: GateQuestion) -> ApprovalAnswer | None:
        with self.quiet():
            self.console.print(Markdown(question.review))
            self.console.print(f"(flow run {question.flow_run_id}; no answer in "
                               f"{question.timeout_seconds}s counts as a rejection)", highlight=False)
            decision = Prompt.ask("Decision", console=self.console,
                                  choices=["approve", "reject", "request_changes"])
            reason = Prompt.ask("Reason", console=self.console, default="")
            instructions = ""
            if decision == "request_changes":
                instructions = Prompt.ask("Instructions for the step", console=self.console, default="")
        return ApprovalAnswer(decision=decision, approver=getpass.getuser(), reason=reason,  # type: ignore[arg-type]
                              instructions=instructions)


def answer_in_terminal(console: Console, quiet: Callable[[], AbstractContextManager[Any]]) -> Callable[[], None]:
    """Let this terminal answer the gates of runs in this process; returns the undo."""
    return use_answerer(TerminalAnswerer(console, quiet))


def register(app: typer.Typer) -> None:
    app.add_typer(approvals_app, name="approvals")
    app.command()(approve)
    app.command()(reject)
    app.command("request-changes")(request_changes)
