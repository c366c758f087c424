"""Approval gates as a run hook: a step that needs a human waits for their decision.

A step marked ``requires_approval``, or one whose operation or command the
tool policy gates, starts only once no other step runs (``exclusive``); the
flow run then pauses (or, deployed, suspends) with an ``ApprovalAnswer`` form
whose description is the step's review. Approve runs the step; reject, or no
answer before the timeout, stops the run before it with every completed step
kept; request changes re-plans with the approver's words when the run has an
LLM planner, and stops otherwise. Every decision is recorded (kind
``approval``) with who answered, when, and how long the run waited.

Each gate's pause key names the step's spec and its input snapshot, so a
retried or resumed flow run gets the answer already given instead of asking
again, and an approval kept in the ``ApprovalStore`` is honoured when the run
is started again.
"""

from __future__ import annotations

import contextvars
import hashlib
import html
import json
import logging
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any, Protocol
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout, PrefectHTTPStatusError
from prefect.flow_runs import pause_flow_run, resume_flow_run, suspend_flow_run
from prefect.input import create_flow_run_input_from_model
from prefect.input.run_input import keyset_from_base_key
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL
from prefect.states import Running

from prefect_agentic.blocks.gate_defaults import GateDefaults
from prefect_agentic.executor import RunContext, run_resources
from prefect_agentic.gates.answer import (
    ApprovalAnswer,
    GateQuestion,
    GateSummary,
    answer_form,
    answerers,
)
from prefect_agentic.gates.form_copy import save_form_copy
from prefect_agentic.gates.notice import WaitingNotice, tell_watchers, why_gated
from prefect_agentic.gates.review import GateReview, review_of
from prefect_agentic.gates.store import ApprovalStore
from prefect_agentic.pins import switched_versions
from prefect_agentic.plan.models import Plan, Step
from prefect_agentic.policy import approval_rules, auto_approves
from prefect_agentic.report import StepReport
from prefect_agentic.scheduler import Decision, Go, Replan, RunHook, Stop
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.workspace import run_git

logger = logging.getLogger("prefect_agentic.gates")

MAX_ASKS = 3  # answers the run cannot act on (a rejection without reason) before it stops


class ChangeRequester(Protocol):
    """Re-plans a step a human asked to change (the agent loop with an LLM planner)."""

    def replan_for_changes(self, plan: Plan, reports: dict[str, StepReport], step: Step,
                           instructions: str, diff: str) -> Plan | Stop: ...


def gate_key(run: RunContext, step: Step, input_snapshot: str) -> str:
    """The gate's pause key: what exactly is approved (lower-case letters, digits, dashes)."""
    spec = json.dumps({"step": step.model_dump(mode="json", exclude={"description"}),
                       "run": run.run_key, "input": input_snapshot}, sort_keys=True)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:16]
    return f"approve-{re.sub(r'[^a-z0-9]+', '-', step.id.lower()).strip('-')[:40]}-{digest}"


def needs_gate(run: RunContext, step: Step) -> bool:
    return step.requires_approval or bool(approval_rules(run.policy, step, default_registry()))


class ApprovalGate(RunHook):
    """Asks a human before every gated step of one run (see the module docstring)."""

    def __init__(self, plan: Plan, run: RunContext, defaults: GateDefaults | None = None,
                 changes: ChangeRequester | None = None) -> None:
        self.plan = plan
        self.run = run
        self.defaults = defaults or GateDefaults()
        self.changes = changes
        self.store = ApprovalStore(run.run_key)

    def exclusive(self, step: Step) -> bool:
        return needs_gate(self.run, step)

    def before_step(self, step: Step, done: dict[str, StepReport]) -> Decision | Replan:
        if not needs_gate(self.run, step):
            return Go()
        key = gate_key(self.run, step, self._input_snapshot(step, done))
        recorded = self.store.get(key)
        if recorded is not None:
            return self._approved(step, {**recorded, "source": "recorded", "honoured_at": _now()})
        if auto_approves(self.run.policy, step, default_registry()):
            rules = approval_rules(self.run.policy, step, default_registry())
            return self._approved(step, self._record_base(key, step) | {
                "decision": "approve", "approver": "policy:auto_approve", "source": "policy",
                "reason": f"the tool policy auto-approves {', '.join(rules)}"})
        if not answerers() and not PREFECT_API_URL.value():
            reason = ("nobody can answer: the run uses Prefect's ephemeral API and no terminal asks; "
                      "run `agentic run` in a terminal, or set PREFECT_API_URL to a Prefect server")
            self._record(step, self._record_base(key, step) | {
                "decision": "reject", "approver": None, "source": "unanswerable", "reason": reason})
            return Stop(f"step '{step.id}' needs approval and {reason}")
        return self._ask(step, key, done)

    def _ask(self, step: Step, key: str, done: dict[str, StepReport]) -> Decision | Replan:
        review = self._review(step, done)
        timeout = self.defaults.timeout_for(step.id)
        problem = ""
        for attempt in range(1, MAX_ASKS + 1):
            ask_key = key if attempt == 1 else f"{key}-{attempt}"
            base = self._record_base(key, step) | {"pause_key": ask_key, "timeout_seconds": timeout}
            markdown, form_html = self._markdown(review, ask_key, problem)
            answer, asked_at, answered_at, mode = self._wait(review, ask_key, markdown, form_html, timeout)
            timing = {"asked_at": asked_at.isoformat(), "mode": mode,
                      "answered_at": answered_at.isoformat() if answered_at else None,
                      "wait_seconds": round(((answered_at or datetime.now(timezone.utc)) - asked_at)
                                            .total_seconds(), 3)}
            if answer is None:
                self._record(step, base | timing | {"decision": "timeout", "approver": None,
                                                    "reason": f"no answer within {timeout}s"})
                return Stop(f"step '{step.id}' was not approved: no answer within {timeout}s "
                            "(counts as a rejection)")
            problem = answer.problem() or ""
            if not problem:
                return self._act(review, answer, base | timing)
            self._record(step, base | timing | _answered(answer) | {"usable": False, "problem": problem})
        return Stop(f"step '{step.id}' was not approved: {MAX_ASKS} answers could not be used ({problem})")

    def _act(self, review: GateReview, answer: ApprovalAnswer, record: dict[str, Any]) -> Decision | Replan:
        step, record = review.step, record | _answered(answer)
        who = f"{answer.approver}: {answer.reason}" if answer.reason else answer.approver
        if answer.decision == "approve":
            self.store.put(record["gate"], record)
            return self._approved(step, record)
        self._record(step, record)
        if answer.decision == "reject":
            return Stop(f"step '{step.id}' rejected by {who}")
        if self.changes is None:
            return Stop(f"changes to step '{step.id}' requested by {who}; the run has no LLM "
                        "planner to re-plan, so it stops here")
        text = "\n".join(t for t in (answer.reason, answer.instructions) if t.strip())
        changes = self.changes

        def revise(plan: Plan, reports: dict[str, StepReport]) -> Plan | Stop:
            return changes.replan_for_changes(plan, reports, step, text, review.diff)

        return Replan(reason=f"changes to step '{step.id}' requested by {answer.approver}", revise=revise)

    def _approved(self, step: Step, record: dict[str, Any]) -> Go:
        self._record(step, record)
        run_resources(self.run).approved_steps.add(step.id)
        return Go()

    def _wait(self, review: GateReview, key: str, markdown: str, form_html: str, timeout: int
              ) -> tuple[ApprovalAnswer | None, datetime, datetime | None, str]:
        """Pause or suspend until answered; (answer or None on timeout, asked, answered, mode)."""
        step, mode = review.step, self._mode()
        form = answer_form(form_html).with_initial_data(
            description=f"Approve step `{step.id}` of plan `{self.plan.id}`? The review is under **Decision**.")
        asked_at = self.store.asked_at(key)
        flow_run_id = str(FlowRunContext.get().flow_run.id)  # type: ignore[union-attr]
        given = _response_created(flow_run_id, key, mode) if mode == "suspend" else None
        if given is not None:  # started again after the answer: take it, do not ask again
            answer = suspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
            self.store.forget_asked(key)
            get_run_logger().info("Answer to the approval of step '%s' received: %s by %s at %s (gate %s)",
                                  step.id, answer.decision, answer.approver, given.isoformat(), key)
            return answer, asked_at, given, mode
        rules = approval_rules(self.run.policy, step, default_registry())
        notice = WaitingNotice(flow_run_id=flow_run_id, plan=self.plan.id, step=step.id,
                               why=why_gated(step.requires_approval, rules), gate=key,
                               timeout_seconds=timeout)
        summary = GateSummary(plan=self.plan.id, goal=self.plan.goal, step=step.id, tool=step.tool,
                              command=review.command, risk=review.risk_line(), asked_at=asked_at,
                              timeout_seconds=timeout, review=markdown, why=notice.why)
        try:
            create_flow_run_input_from_model(GateSummary.input_key(key), summary, UUID(flow_run_id))
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 409:  # 409: a suspended run asking again after its restart
                raise
        self._announce(notice, step, mode)
        question = GateQuestion(flow_run_id=flow_run_id, step_id=step.id, key=key, review=markdown,
                                timeout_seconds=timeout)
        for answerer in answerers():
            _in_thread(_answer_with, answerer, question)
        try:
            if mode == "suspend":
                save_form_copy(form, key)  # what a reader restores if this process dies mid-suspension
                answer = suspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
            else:
                answer = pause_flow_run(wait_for_input=form, timeout=timeout, key=key,
                                        poll_interval=self.defaults.poll_interval_seconds)  # type: ignore[arg-type]
        except FlowPauseTimeout:
            self.store.forget_asked(key)
            _take_back(flow_run_id)
            return None, asked_at, None, mode
        self.store.forget_asked(key)
        return answer, asked_at, _answered_at(flow_run_id, key, mode), mode

    def _announce(self, notice: WaitingNotice, step: Step, mode: str) -> None:
        """Say once, everywhere the run is watched, that it waits for a human (see gates.notice)."""
        run_resources(self.run).recorder.record(
            "approval_requested", notice.model_dump() | {"mode": mode, "ui_url": notice.ui_url,
                                                         "approve_command": notice.approve_command},
            step_id=step.id)
        get_run_logger().warning("%s", notice.text())
        try:
            create_markdown_artifact(markdown=notice.markdown(), key=_artifact_key(self.plan.id),
                                     description=f"Plan {self.plan.id} waits for approval of step {step.id}")
        except Exception:  # the log and the event already say it
            logger.exception("could not publish the approval artifact")
        tell_watchers(notice)

    def _mode(self) -> str:
        """``auto``: suspend a deployment's own flow run (not a subflow), pause any other."""
        if self.defaults.mode != "auto":
            return self.defaults.mode
        flow_run = FlowRunContext.get().flow_run  # type: ignore[union-attr]
        deployed = flow_run is not None and flow_run.deployment_id is not None
        return "suspend" if deployed and flow_run.parent_task_run_id is None else "pause"

    def _review(self, step: Step, done: dict[str, StepReport]) -> GateReview:
        """What the approver sees; its file names and diff pass the run's redactor (the form, the
        diff artifact and the notice leave the run, and a step may have written a secret there)."""
        resources = run_resources(self.run)
        workspace, redactor = resources.workspace, resources.redactor
        start = self._input_snapshot(step, done)
        base = self.run.base_snapshot
        return review_of(self.plan, step, self.run.policy, done, redactor.model(workspace.changes(base, start)),
                         redactor.text(workspace.diff(base, start)) if start != base else "",
                         versions=switched_versions(self.run.pins, self.run.tool_versions, self.run.image_id))

    def _markdown(self, review: GateReview, key: str, problem: str) -> tuple[str, str]:
        """The review as Markdown (terminals) and as the form's HTML (the Prefect UI)."""
        link = None
        if review.diff.count("\n") > self.defaults.diff_lines:
            artifact = create_markdown_artifact(
                markdown=f"```diff\n{review.diff}\n```", key=f"{key}-diff"[:100],
                description=f"Full diff of plan {self.plan.id} before step {review.step.id}")
            ui = PREFECT_UI_URL.value()
            link = f"{ui.rstrip('/')}/artifacts/artifact/{artifact}" if ui else f"artifact `{key}-diff`"
        text = review.markdown(diff_lines=self.defaults.diff_lines, diff_link=link)
        form = review.form_html(diff_lines=self.defaults.diff_lines, diff_link=link)
        if not problem:
            return text, form
        warning = f"The last answer could not be used: {problem}. Answer again."
        return f"**{warning}**\n\n{text}", f"<p><strong>{html.escape(warning)}</strong></p>{form}"

    def _input_snapshot(self, step: Step, done: dict[str, StepReport]) -> str:
        """The snapshot the step starts from: the newest of its dependencies' snapshots."""
        snapshots = {done[d].snapshot for d in step.depends_on if d in done and done[d].snapshot}
        if not snapshots:
            return self.run.base_snapshot
        path = run_resources(self.run).workspace.path
        return max(snapshots, key=lambda sha: int(run_git(path, "rev-list", "--count", sha)))

    def _record_base(self, key: str, step: Step) -> dict[str, Any]:
        flow_run = FlowRunContext.get().flow_run  # type: ignore[union-attr]
        return {"gate": key, "step": step.id, "plan": self.plan.id,
                "flow_run_id": str(flow_run.id) if flow_run else None,
                "rules": approval_rules(self.run.policy, step, default_registry()),
                "requires_approval": step.requires_approval}

    def _record(self, step: Step, data: dict[str, Any]) -> None:
        run_resources(self.run).recorder.record("approval", data, step_id=step.id)
        get_run_logger().info("Gate %s of step '%s': %s by %s", data.get("gate"), step.id,
                              data.get("decision"), data.get("approver"))


def _answered(answer: ApprovalAnswer) -> dict[str, Any]:
    return {"decision": answer.decision, "approver": answer.approver, "reason": answer.reason,
            "instructions": answer.instructions, "source": "form"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _answered_at(flow_run_id: str, key: str, mode: str) -> datetime:
    """When the answer reached the API (the response input's creation time), else now."""
    return _response_created(flow_run_id, key, mode) or datetime.now(timezone.utc)


def _response_created(flow_run_id: str, key: str, mode: str) -> datetime | None:
    """When the answer to gate ``key`` reached the API, or None while nobody answered."""
    state_name = "suspended" if mode == "suspend" else "paused"
    response = keyset_from_base_key(f"{state_name}-{key}")["response"]
    with get_client(sync_client=True) as client:
        found = client.filter_flow_run_input(UUID(flow_run_id), key_prefix=response, limit=1,
                                             exclude_keys=set())
    created = found[0].created if found else None
    return created.astimezone(timezone.utc) if created else None


def _artifact_key(plan_id: str) -> str:
    """``agentic-approval-<plan id>``: the Artifacts page shows each plan's latest wait."""
    return re.sub(r"[^a-z0-9-]+", "-", f"agentic-approval-{plan_id}".lower()).strip("-")[:100]


def _take_back(flow_run_id: str) -> None:
    """After a pause timed out, mark the flow run running again so that it ends with its own
    report (a clean stop) instead of Prefect's "paused and never resumed" failure."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(flow_run_id), Running(message="approval gate timed out"),
                                  force=True)


def _in_thread(function: Any, *args: Any) -> None:
    """Run ``function`` in a daemon thread that sees this thread's Prefect settings."""
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(function, *args), daemon=True).start()


def _answer_with(answerer: Any, question: GateQuestion) -> None:
    """Ask an in-process answerer, then resume the paused flow run with its answer."""
    answer = answerer(question)
    if answer is None:
        return
    deadline = time.monotonic() + question.timeout_seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(UUID(question.flow_run_id)).state
            if state is not None and state.is_paused() and state.state_details.pause_key == question.key:
                break
            if state is not None and state.is_final():
                return
            time.sleep(0.1)
    try:
        resume_flow_run(UUID(question.flow_run_id), run_input=answer.model_dump(mode="json"))
    except Exception as exc:  # noqa: BLE001 - answered elsewhere first, or the run ended
        get_run_logger().info("The answer to gate %s was not used: %s", question.key, exc)
