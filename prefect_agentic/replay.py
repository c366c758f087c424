"""Replay of a recorded run from its audit log.

Recorded replay re-makes every decision of the run with the real decision
code (the tool policy, the evaluator, the retry rule, the step graph) while
each tool call is answered from the output the log recorded: no container,
no network, no workspace, so a failure seen in production can be reproduced
anywhere the audit storage can be read. Live replay re-runs each recorded
attempt's tool for real (sandbox and workspace) from the attempt's recorded
input snapshot and reports where the results differ from the recorded ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from prefect_agentic.blocks.budget import Budget
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import AgenticError, AuditError, StepFailed
from prefect_agentic.evaluator import Verdict, VerdictKind, evaluate
from prefect_agentic.executor import RunContext, close_run_resources, execute_step, run_resources
from prefect_agentic.loop.replay import replan_from_log, same_plan
from prefect_agentic.plan.models import Plan, Step
from prefect_agentic.policy import check_tool_call
from prefect_agentic.record.audit import AuditRecord, FutureAuditRecordError, parse_log, verify
from prefect_agentic.record.outcome import error_kind
from prefect_agentic.record.store import AuditStore, log_path
from prefect_agentic.tools.base import Tool
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.workspace import ChangeSummary, mounted, workspace_lock

WOULD_RUN = "would run"
"""A step the run did not run that the replay would have started: the log holds no answer for it."""

IGNORED_OUTPUT_FIELDS = frozenset({"log", "duration_s"})
"""Output fields that differ between any two runs of the same command (live replay skips them)."""


class Difference(BaseModel):
    """A decision or result of the replay that is not the recorded one."""

    step: str | None
    attempt: int | None = None
    what: str
    recorded: Any = None
    replayed: Any = None


class ReplayedAttempt(BaseModel):
    attempt: int
    outcome: str = Field(description="ok, retry, fail (the verdict), or the error kind of a failed call")
    retryable: bool = False
    reasons: list[str] = Field(default_factory=list)


class ReplayedStep(BaseModel):
    step_id: str
    plan_version: int
    status: str
    recorded_status: str
    attempts: list[ReplayedAttempt] = Field(default_factory=list)


class ReplayedReplan(BaseModel):
    """A re-plan made again from the model answers the log recorded."""

    version: int | None
    answers: int = Field(description="Model answers the log holds for it.")
    used: int = Field(description="Answers the replayed planner used.")
    same: bool
    problem: str = ""


class ReplayReport(BaseModel):
    flow_run_id: str
    plan_id: str
    mode: Literal["recorded", "live"]
    steps: list[ReplayedStep] = Field(default_factory=list)
    recorded_status: str | None = None
    replayed_status: str | None = None
    differences: list[Difference] = Field(default_factory=list)
    replans: list[ReplayedReplan] = Field(default_factory=list)

    @property
    def same(self) -> bool:
        return not self.differences


@dataclass
class _Attempts:
    """The records of one step's attempts under one plan version, by attempt number."""

    started: dict[int, AuditRecord] = field(default_factory=dict)
    verdicts: dict[int, AuditRecord] = field(default_factory=dict)
    finished: dict[int, AuditRecord] = field(default_factory=dict)


_SLOTS = {"attempt_started": "started", "verdict": "verdicts", "attempt_finished": "finished"}


def load_records(store: AuditStore, flow_run_id: str) -> list[AuditRecord]:
    """The run's records, refusing a log whose chain is broken (a replay of it would prove nothing)."""
    lines = store.read_log(flow_run_id)
    try:
        check = verify(lines)
    except FutureAuditRecordError as exc:
        raise AuditError(f"{store.describe()}/{log_path(flow_run_id)}: {exc}") from None
    if not check.ok:
        raise AuditError(f"audit log of run {flow_run_id} failed verification: {'; '.join(check.problems)}")
    records = parse_log(lines)
    if not records or records[0].kind != "run_started":
        raise AuditError(f"audit log of run {flow_run_id} does not start with run_started")
    return records


def replay_run(store: AuditStore, flow_run_id: str, *, live: bool = False) -> ReplayReport:
    """Replay the run ``flow_run_id`` (see the module docstring)."""
    records = load_records(store, flow_run_id)
    if not live:
        return _replay(records, flow_run_id, store, None)
    workspace = Path(records[0].data["workspace"])
    with workspace_lock(workspace), mounted(workspace):  # no run may move the workspace under the replay
        run = _live_context(records[0].data, flow_run_id)
        try:
            return _replay(records, flow_run_id, store, run)
        finally:
            close_run_resources(run.run_key)


def _replay(records: list[AuditRecord], flow_run_id: str, store: AuditStore,
            live_run: RunContext | None) -> ReplayReport:
    started = records[0].data
    plan = Plan.model_validate(started["plan"])
    policy = ToolPolicy.model_validate(_block_fields(started.get("policy", {})))
    report = ReplayReport(flow_run_id=flow_run_id, plan_id=plan.id,
                          mode="recorded" if live_run is None else "live")
    pending: dict[str, _Attempts] = {}
    statuses: dict[str, str] = {}
    recorded_statuses: dict[str, str] = {}
    model_calls: list[dict[str, Any]] = []
    for record in records:
        if record.kind == "model_call" and record.data.get("purpose") == "replan":
            model_calls.append(record.data)
        elif record.kind == "plan":
            if model_calls and (record.data.get("planner") or {}).get("name") == "llm":
                _replay_replan(report, plan, recorded_statuses, model_calls, policy, record.data, store)
            model_calls = []
            plan = Plan.model_validate(record.data["plan"])
        elif record.step and record.kind in _SLOTS:
            by_number = getattr(pending.setdefault(record.step, _Attempts()), _SLOTS[record.kind])
            by_number[record.data["attempt"]] = record
        elif record.step and record.kind == "step_finished":
            step = plan.step(record.step)
            replayed = _replay_step(step, plan, policy, pending.pop(record.step, _Attempts()),
                                    record, statuses, report, live_run, store)
            statuses[step.id] = replayed.status
            recorded_statuses[step.id] = record.data["status"]
            report.steps.append(replayed)
        elif record.kind == "run_finished":
            report.recorded_status = record.data.get("status")
            report.replayed_status = _run_status(plan, statuses, record.data)
            _compare(report, None, None, "run status", report.recorded_status, report.replayed_status)
    return report


def _replay_replan(report: ReplayReport, current: Plan, statuses: Mapping[str, str],
                   recorded_calls: list[dict[str, Any]], policy: ToolPolicy, recorded: Mapping[str, Any],
                   store: AuditStore) -> None:
    """The re-plan made again from the recorded model answers (see ``loop.replay``)."""
    calls = [store.resolve(call) for call in recorded_calls]  # large answers are stored objects
    failed = [s.id for s in current.steps if statuses.get(s.id) == "failed"]
    replayed, problem, used = replan_from_log(current, statuses, calls, policy, failed)
    version = recorded.get("version")
    report.replans.append(ReplayedReplan(version=version, answers=len(calls), used=used,
                                         same=replayed is not None and same_plan(recorded["plan"], replayed),
                                         problem=problem))
    if replayed is None:
        _compare(report, None, None, f"re-plan v{version}", "a valid plan", problem)
        return
    _compare(report, None, None, f"re-plan v{version}: plan", recorded["plan"],
             recorded["plan"] if same_plan(recorded["plan"], replayed)
             else replayed.model_dump(mode="json", exclude_defaults=True))
    _compare(report, None, None, f"re-plan v{version}: answers used", len(calls), used)


def _replay_step(step: Step, plan: Plan, policy: ToolPolicy, attempts: _Attempts, finished: AuditRecord,
                 statuses: Mapping[str, str], report: ReplayReport, live_run: RunContext | None,
                 store: AuditStore) -> ReplayedStep:
    recorded = finished.data["status"]
    replayed = ReplayedStep(step_id=step.id, plan_version=plan.version, status=recorded,
                            recorded_status=recorded)
    if recorded in ("cached", "not_run") or not attempts.started:
        if recorded == "not_run" and not finished.data.get("reason", "").startswith("not run: a step it"):
            return replayed  # stopped by a hook (budget, approval): that decision is the record's
        blocked = any(statuses.get(d) not in ("completed", "cached") for d in step.depends_on)
        replayed.status = recorded if blocked or recorded != "not_run" else WOULD_RUN
        _compare(report, step.id, None, "status", recorded, replayed.status)
        return replayed
    tool = _recorded_tool(step, attempts)
    decision = check_tool_call(policy, tool, tool.parse_args(step.args))
    numbers = sorted(set(attempts.started) | set(attempts.finished))
    for number in numbers:
        if not decision.allowed:
            outcome = ReplayedAttempt(attempt=number, outcome=f"policy:{decision.rule}",
                                      reasons=[decision.reason])
        elif number not in attempts.started:  # refused before it started (budget): the record answers
            outcome = _recorded_attempt(number, attempts)
        else:
            outcome = _attempt_outcome(step, number, attempts, live_run, store, report)
        _compare(report, step.id, number, "outcome", _recorded_outcome(number, attempts), outcome.outcome)
        replayed.attempts.append(outcome)
        retry = outcome.retryable and number <= step.retries
        _compare(report, step.id, number, "retried", number + 1 in numbers, retry)
    last = replayed.attempts[-1].outcome
    replayed.status = "completed" if last == "ok" else "failed"
    _compare(report, step.id, None, "status", recorded, replayed.status)
    return replayed


def _attempt_outcome(step: Step, number: int, attempts: _Attempts, live_run: RunContext | None,
                     store: AuditStore, report: ReplayReport) -> ReplayedAttempt:
    """The attempt's outcome: re-evaluated from the recorded tool output, or re-run for real."""
    if live_run is not None:
        return _live_attempt(step, number, attempts, live_run, store, report)
    verdict_record = attempts.verdicts.get(number)
    if verdict_record is None:  # the call itself failed (tool error, timeout, denial): that is its answer
        return _recorded_attempt(number, attempts)
    verdict = _evaluate(_recorded_tool(step, attempts), step, store.resolve(verdict_record.data))
    recorded = Verdict.model_validate(verdict_record.data["verdict"])
    _compare(report, step.id, number, "verdict reasons", recorded.reasons, verdict.reasons)
    return _verdict_attempt(number, verdict)


def _verdict_attempt(number: int, verdict: Verdict) -> ReplayedAttempt:
    return ReplayedAttempt(attempt=number, outcome=verdict.kind.value, reasons=verdict.reasons,
                           retryable=verdict.kind is VerdictKind.RETRY)


def _recorded_attempt(number: int, attempts: _Attempts) -> ReplayedAttempt:
    """An attempt whose tool call failed, answered from its record."""
    data = attempts.finished[number].data if number in attempts.finished else {}
    return ReplayedAttempt(attempt=number, outcome=_recorded_outcome(number, attempts),
                           retryable=data.get("outcome") == "retry",
                           reasons=[str(data.get("error", ""))[:300]] if data.get("error") else [])


def _recorded_tool(step: Step, attempts: _Attempts) -> type[Tool]:
    """The adapter version the step's first attempt ran with, when this pack still has it; else the newest."""
    registry = default_registry()
    first = attempts.started[min(attempts.started)] if attempts.started else None
    recorded = first.data.get("tool_version") if first is not None else None
    if recorded and registry.has(step.tool, str(recorded)):
        return registry.get(step.tool, str(recorded))
    return registry.get(step.tool)


def _evaluate(tool: type[Tool], step: Step, data: Mapping[str, Any]) -> Verdict:
    output = tool.Output.model_validate(data["output"])
    changes = ChangeSummary.model_validate(data.get("changes") or {})
    return evaluate(step.success.merged_over(dict(tool.default_success)), output, changes)


def _live_attempt(step: Step, number: int, attempts: _Attempts, run: RunContext, store: AuditStore,
                  report: ReplayReport) -> ReplayedAttempt:
    """Run the attempt again from its recorded input snapshot and compare what came out."""
    captured = _Capture()
    run_resources(run).recorder = captured
    snapshot = attempts.started[number].data["input_snapshot"]
    try:
        execute_step(step, run, snapshot, number)
    except AgenticError as exc:
        if not isinstance(exc, StepFailed):
            return ReplayedAttempt(attempt=number, outcome=error_kind(exc), reasons=[str(exc)[:300]],
                                   retryable=bool(getattr(exc, "retryable", False)))
    live = captured.verdict
    recorded = attempts.verdicts.get(number)
    if live is None:
        return ReplayedAttempt(attempt=number, outcome="no verdict")
    verdict = Verdict.model_validate(live["verdict"])
    if recorded is not None:
        old = store.resolve(recorded.data)
        for name in sorted(set(old["output"]) | set(live["output"])):
            if name not in IGNORED_OUTPUT_FIELDS:
                _compare(report, step.id, number, f"output.{name}", old["output"].get(name),
                         live["output"].get(name))
        _compare(report, step.id, number, "snapshot", old.get("snapshot"), live.get("snapshot"))
    return _verdict_attempt(number, verdict)


class _Capture:
    """Recorder of a live replay: keeps the last verdict record, writes nothing anywhere."""

    verdict: dict[str, Any] | None = None

    def record(self, kind: str, data: Mapping[str, Any], *, step_id: str | None = None) -> None:
        if kind == "verdict":
            self.verdict = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v
                            for k, v in data.items()}


def _recorded_outcome(number: int, attempts: _Attempts) -> str:
    finished = attempts.finished.get(number)
    if finished is None:
        return "unfinished"
    data = finished.data
    if data.get("outcome") == "ok":
        return "ok"
    kind = str(data.get("error_kind", ""))
    if kind.startswith("unmet:"):
        return VerdictKind.RETRY.value
    if kind.startswith("guard:"):
        return VerdictKind.FAIL.value
    return kind


def _run_status(plan: Plan, statuses: Mapping[str, str], finished: Mapping[str, Any]) -> str:
    if finished.get("status") == "crashed":
        return "crashed"
    final = [statuses.get(s.id, "not_run") for s in plan.steps]
    if WOULD_RUN in final:
        return "undetermined"
    if finished.get("stopped"):
        return "failed" if "failed" in final else "stopped"
    return "completed" if all(s in ("completed", "cached") for s in final) else "failed"


def _compare(report: ReplayReport, step: str | None, attempt: int | None, what: str,
             recorded: Any, replayed: Any) -> None:
    if recorded != replayed:
        report.differences.append(Difference(step=step, attempt=attempt, what=what,
                                             recorded=recorded, replayed=replayed))


def _block_fields(dumped: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dumped.items() if k not in ("block_type_slug",)}


def _live_context(started: Mapping[str, Any], flow_run_id: str) -> RunContext:
    """A run context for re-running the recorded run's steps in its own workspace, without a budget."""
    workspace = Path(started["workspace"])
    if not (workspace / ".git").exists():
        raise AuditError(f"live replay needs the run's workspace {workspace}, which is not on this "
                         "machine; replay without --live answers every tool call from the log")
    return RunContext(
        run_key=f"replay-{flow_run_id}", plan_id=started["plan_id"], workspace=workspace,
        workspace_epoch=started["workspace_epoch"], base_snapshot=started["base_snapshot"],
        sandbox=SandboxSettings.model_validate(_block_fields(started["sandbox"])),
        policy=ToolPolicy.model_validate(_block_fields(started.get("policy", {}))), budget=Budget(),
    )
