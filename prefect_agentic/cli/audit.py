"""``agentic audit verify``, ``agentic replay`` and ``agentic stats``: a run's record, re-made and counted.

RUN is a flow run id (the report's ``flow_run_id``, the run's id in the
Prefect UI): each flow run has its own audit log. Logs are read from the
``AuditStorage`` block named by ``--audit-block`` or ``$AGENTIC_AUDIT_BLOCK``
(default: ``$AGENTIC_HOME/audit``).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Optional

import typer
from prefect.exceptions import ObjectNotFound
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prefect_agentic.blocks.audit_storage import AuditStorage
from prefect_agentic.cli.errors import EXIT_ENVIRONMENT, EXIT_FAILED, classify, configured_api_url
from prefect_agentic.cli.runs import audited_run_id
from prefect_agentic.errors import AgenticError, AuditError
from prefect_agentic.flows.artifacts import AnchorArtifactError, read_audit_anchor
from prefect_agentic.record.audit import FutureAuditRecordError, Verification, check_anchor
from prefect_agentic.record.audit import verify as verify_log
from prefect_agentic.record.store import AuditStore, log_path
from prefect_agentic.replay import ReplayReport, replay_run
from prefect_agentic.stats import (
    Stats,
    Timing,
    compute,
    publish_stats,
    read_flow_runs,
    run_facts,
    workflow_table,
)

err = Console(stderr=True)
out = Console(width=160, soft_wrap=False)
audit_app = typer.Typer(help="Check the audit logs of runs.", no_args_is_help=True)

RUN_HELP = "Flow run id of the run (its report's flow_run_id), or a unique start of it."
LIVE_HELP = "Re-run each recorded attempt's tool for real (Docker, the run's workspace)."
BLOCK_HELP = "Name of a saved Agentic Audit Storage block (default: $AGENTIC_AUDIT_BLOCK, else local)."


def _store(block: str | None) -> AuditStore:
    try:
        return AuditStore(AuditStorage.configured(block))
    except ValueError as exc:
        err.print(f"[bold red]error:[/] --audit-block {escape(str(block))}: {escape(str(exc))}",
                  highlight=False)
        raise typer.Exit(2) from None


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


CHAIN_ONLY_HELP = ("Check the records and the chain only, not the head against the anchor Prefect keeps "
                   "(the output says so): for logs whose run no reachable Prefect API knows.")


@dataclass
class RunCheck:
    """One run's verification: the chain (``result``) and what became of its head."""

    run: str
    result: Verification
    head: Literal["anchored", "chain-only", "not-checked"]
    """How the head fared against the anchor Prefect keeps."""
    why: str = ""
    """Why the head was not checked."""


@audit_app.command("verify")
def verify(
    runs: Annotated[list[str], typer.Argument(help="Flow run id(s) of the run(s) to check (or unique starts of them).")],
    audit_block: Annotated[Optional[str], typer.Option(help=BLOCK_HELP)] = None,  # noqa: UP045
    chain_only: Annotated[bool, typer.Option("--chain-only", help=CHAIN_ONLY_HELP)] = False,
) -> None:
    """Check runs' audit logs: every record's hash, the chain, and its head against the one Prefect keeps.

    Exit 1 if a log was changed or does not end with run_finished; 3 if a head could not be checked
    (no Prefect API answers, it does not know the run, or holds no anchor for the end of its log).
    """
    store = _store(audit_block)
    try:
        runs = [audited_run_id(store, run) for run in runs]
        checks = [_check_run(store, run, chain_only) for run in runs]
    except AgenticError as exc:
        raise _fail(exc) from None
    for check in checks:
        _print_check(check)
    if any(not c.result.ok or not c.result.complete for c in checks):
        raise typer.Exit(EXIT_FAILED)
    if any(c.head == "not-checked" for c in checks):
        err.print("the head of a log was NOT checked, so a log rewritten or cut off by someone who recomputed "
                  "its hashes is not ruled out; `agentic audit verify --chain-only` checks the chain alone",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ENVIRONMENT)
    raise typer.Exit(0)


def _check_run(store: AuditStore, run: str, chain_only: bool) -> RunCheck:
    """The chain of the run's log, then its head against the anchor (unless ``chain_only``)."""
    lines = store.read_log(run)
    try:
        result = verify_log(lines)
    except FutureAuditRecordError as exc:  # the file, then which record and which versions
        raise AuditError(f"{store.describe()}/{log_path(run)}: {exc}") from None
    if chain_only:
        return RunCheck(run, result, "chain-only")
    why = _head_not_checked(run, lines, result)
    return RunCheck(run, result, "not-checked" if why else "anchored", why or "")


def _head_not_checked(run: str, lines: list[bytes], result: Verification) -> str | None:
    """Compare the log's head with the anchor Prefect keeps; why it could not be compared, if so.

    A log rewritten from some record on (hashes recomputed) or cut off still forms a
    chain, but no longer holds the head the run's last process handed to Prefect
    (a configured server, or with none the embedded API's database the run wrote
    to). A mismatch is one of ``result``'s problems.
    """
    try:
        anchor = asyncio.run(read_audit_anchor(run))
    except ValueError:
        return f"{run} is not a flow run id, so no anchor in Prefect names it"
    except AnchorArtifactError as exc:
        return str(exc)
    except ObjectNotFound:
        return (f"the Prefect API ({_api()}) does not know flow run {run}; point PREFECT_API_URL at the "
                "server the run was made on")
    except Exception as exc:  # the API unreachable or refusing: said as the error boundary says it
        failure = classify(exc)
        if failure is None:
            raise
        return f"Prefect's API could not be read: {failure.message}"
    if anchor is None:
        return (f"the Prefect API ({_api()}) holds no anchor of this run's audit head (made by a pack "
                "older than the anchor, or its last process could not publish it)")
    found = check_anchor(lines, anchor)
    if found.problem:
        result.problems.append(found.problem)
    return found.not_anchored


def _api() -> str:
    """Which API was asked: an anchor lives in the database of the API the run reported to."""
    return configured_api_url() or "the embedded API, $PREFECT_HOME's database"


def _print_check(check: RunCheck) -> None:
    """The run's problems, then one line that says whether its head was checked, and if not why:
    an unchecked head never reads as ``ok``."""
    result = check.result
    for problem in result.problems:
        out.print(f"[red]✘[/] {escape(problem)}", highlight=False, soft_wrap=True)
    head = {"anchored": "head anchored in Prefect", "chain-only": "head not checked (--chain-only)",
            "not-checked": f"head NOT checked: {check.why}"}[check.head]
    if not result.ok:
        said = f"TAMPERED ({len(result.problems)} problem(s))"
    elif not result.complete:
        said = (f"chain intact over {result.records} records, but it does not end with run_finished: the run "
                f"is still going, suspended, crashed, or its last records were removed; {head}")
    elif check.head == "anchored":
        said = f"ok, {result.records} records, head {result.head} (anchored in Prefect)"
    else:
        said = f"chain ok, {result.records} records, head {result.head}; {head}"
    out.print(f"audit log of run {check.run}: {escape(said)}", highlight=False, soft_wrap=True)


def replay(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    live: Annotated[bool, typer.Option(help=LIVE_HELP)] = False,
    audit_block: Annotated[Optional[str], typer.Option(help=BLOCK_HELP)] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print the replay report as JSON.")] = False,
) -> None:
    """Re-make a recorded run's decisions from its audit log; exit 1 if any differs."""
    store = _store(audit_block)
    try:
        report = replay_run(store, audited_run_id(store, run), live=live)
    except AgenticError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps({**report.model_dump(mode="json"), "same": report.same}, indent=2))
    else:
        _print_replay(report)
    raise typer.Exit(0 if report.same else 1)


def _print_replay(report: ReplayReport) -> None:
    how = "tools re-run for real" if report.mode == "live" else "tool calls answered from the log"
    out.print(f"replay of run {report.flow_run_id} ({report.plan_id}; {how})", highlight=False)
    table = Table()
    for column in ("step", "plan", "recorded", "replayed", "attempts"):
        table.add_column(column)
    for step in report.steps:
        attempts = ", ".join(f"{a.attempt}:{a.outcome}" for a in step.attempts) or "-"
        table.add_row(step.step_id, f"v{step.plan_version}", step.recorded_status, step.status, attempts)
    out.print(table)
    for replan in report.replans:
        mark = "[green]=[/]" if replan.same else "[red]≠[/]"
        out.print(f"{mark} re-plan v{replan.version}: made again from {replan.answers} recorded model "
                  f"answer(s), {replan.used} used" + (f"; {escape(replan.problem)}" if replan.problem else ""),
                  highlight=False)
    for diff in report.differences:
        where = f"{diff.step or 'run'}" + (f" attempt {diff.attempt}" if diff.attempt else "")
        out.print(f"[red]≠[/] {escape(where)} {escape(diff.what)}: recorded {escape(repr(diff.recorded))}, "
                  f"replayed {escape(repr(diff.replayed))}", highlight=False)
    verdict = "same decisions" if report.same else f"{len(report.differences)} difference(s)"
    out.print(f"run status: recorded {report.recorded_status}, replayed {report.replayed_status}; {verdict}",
              highlight=False)


WORKFLOW_HELP = "Only this workflow (plan id)."
SINCE_HELP = "Only runs started since: an ISO date/time, or an age such as 30m, 12h, 7d."


def parse_since(text: str | None) -> datetime | None:
    """``7d``/``12h``/``30m`` ago, or an ISO timestamp (naive means UTC)."""
    if not text:
        return None
    age = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if age:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[age.group(2)]
        return datetime.now(timezone.utc) - timedelta(**{unit: int(age.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither an age (30m, 12h, 7d) nor an ISO date/time",
                                 param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def stats(
    since: Annotated[Optional[str], typer.Option(help=SINCE_HELP)] = None,  # noqa: UP045
    workflow: Annotated[Optional[str], typer.Option(help=WORKFLOW_HELP)] = None,  # noqa: UP045
    audit_block: Annotated[Optional[str], typer.Option(help=BLOCK_HELP)] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    publish: Annotated[bool, typer.Option(help="Also publish them as a Prefect table artifact.")] = False,
) -> None:
    """Success rates, completion times, retries, failure modes and cost of runs (Prefect API + audit logs)."""
    moment = parse_since(since)
    store = _store(audit_block)
    flow_runs = asyncio.run(read_flow_runs(moment))
    figures = compute([run_facts(r, store) for r in flow_runs], since=moment, workflow=workflow)
    if publish:
        publish_stats(workflow_table(figures), f"prefect-agentic metrics since {moment or 'the beginning'}")
    if as_json:
        typer.echo(figures.model_dump_json(indent=2))
    else:
        _print_stats(figures)


def _print_stats(figures: Stats) -> None:
    table = Table(title="workflows", title_justify="left")
    for column in ("workflow", "runs", "success", "mean", "p50", "p95", "approval wait", "cpu-s/run",
                   "llm tokens", "llm cost"):
        table.add_column(column, justify="left" if column == "workflow" else "right")
    for w in figures.workflows:
        table.add_row(w.workflow, str(w.runs), _rate(w.success_rate, w.succeeded, w.finished),
                      *_timing(w.completion_s), f"{w.approval_wait_s:.1f}s", _num(w.cpu_seconds_per_run),
                      str(w.llm_tokens), f"{w.llm_cost:g}")
    steps = Table(title="steps", title_justify="left")
    for column in ("workflow", "step", "runs", "success", "cached", "retries/run", "mean", "p50", "p95"):
        steps.add_column(column, justify="left" if column in ("workflow", "step") else "right")
    for s in figures.steps:
        steps.add_row(s.workflow, s.step, str(s.runs), _rate(s.success_rate, s.succeeded, s.runs),
                      str(s.cached), _num(s.retries_per_run), *_timing(s.duration_s))
    modes = Table(title="failure modes", title_justify="left")
    for column in ("workflow", "error kind", "count"):
        modes.add_column(column, justify="right" if column == "count" else "left")
    for mode in figures.failure_modes:
        modes.add_row(mode["workflow"], mode["error_kind"], str(mode["count"]))
    out.print(table, steps, modes)


def _rate(rate: float | None, part: int, whole: int) -> str:
    return "-" if rate is None else f"{rate:.0%} ({part}/{whole})"


def _timing(t: Timing) -> list[str]:
    return [f"{v:.2f}s" if v is not None else "-" for v in (t.mean, t.p50, t.p95)]


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
    app.command()(replay)
    app.command()(stats)
