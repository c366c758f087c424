"""The ``run-plan`` flow: runs any plan on any git repository.

The plan is a flow parameter (stored on the flow run, so what a run executes
never changes under it) and is compiled into tasks when the flow starts.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run as flow_run_runtime
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.compiler import compile_plan
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.executor import RunContext, StepResult, close_run_resources
from prefect_agentic.plan.models import Plan
from prefect_agentic.record.progress import StepEvent, StepStatus, publish, subscribe
from prefect_agentic.settings import agentic_home
from prefect_agentic.workspace import Workspace, resolve_base, run_key

DEFAULT_CONCURRENCY = 4


class StepReport(BaseModel):
    """How one step ended in this run."""

    step_id: str
    tool: str
    status: StepStatus
    attempts: int = 0
    cached: bool = False
    duration_s: float | None = None
    snapshot: str | None = None
    diff_stat: str | None = None
    reason: str | None = None
    output: dict[str, Any] | None = None


class RunReport(BaseModel):
    """The outcome of a plan run: every step, and the snapshot it ended on."""

    plan_id: str
    plan_version: int
    goal: str
    run_key: str
    flow_run_id: str | None
    repo: str
    base_snapshot: str
    final_snapshot: str
    workspace: str
    started_at: datetime
    duration_s: float
    steps: list[StepReport] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.status in (StepStatus.COMPLETED, StepStatus.CACHED) for s in self.steps)


def _flow_run_name() -> str:
    plan = flow_run_runtime.parameters.get("plan")
    if isinstance(plan, Plan):
        return f"{plan.id} v{plan.version}: {plan.goal}"[:120]
    if isinstance(plan, dict):
        return f"{plan.get('id')} v{plan.get('version', 1)}: {plan.get('goal')}"[:120]
    return "run-plan"


@flow(
    name="run-plan",
    flow_run_name=_flow_run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_CONCURRENCY),
    description="Run an agentic plan on a git repository: cached, retryable steps in Docker sandboxes.",
)
def run_plan(
    plan: Plan,
    repo: str,
    ref: str = "HEAD",
    sandbox: SandboxSettings | None = None,
    fresh: bool = False,
) -> RunReport:
    """Run ``plan`` on the repository at ``repo`` starting from commit ``ref``.

    The repository is cloned into a private run workspace; the user's branches
    and working tree are never touched. With ``fresh``, cached step results are
    ignored (and replaced). Raises ``PlanRunFailed`` (the flow run
    fails) when any step failed or could not run; the report is attached.
    """
    logger = get_run_logger()
    started_at, started = datetime.now(timezone.utc), time.monotonic()
    compiled = compile_plan(plan)
    source = Path(repo).resolve()
    base = resolve_base(source, ref)
    key = run_key(plan.id, source, base)
    workspace = Workspace.prepare(source, base, agentic_home() / "workspaces" / key)
    run = RunContext(run_key=key, plan_id=plan.id, workspace=workspace.path,
                     workspace_epoch=workspace.epoch, base_snapshot=base, sandbox=sandbox or SandboxSettings())
    logger.info("Plan %s v%s on %s@%s (workspace %s)", plan.id, plan.version, source, base[:12],
                workspace.path)
    attempts: dict[str, int] = {}
    unsubscribe = subscribe(lambda e: _count_attempt(e, key, attempts))
    with workspace.run_lock():
        try:
            futures = compiled.submit(run, refresh_cache=fresh)
            reports = _collect(futures, plan, key, attempts)
        finally:
            unsubscribe()
            close_run_resources(key)
    report = RunReport(
        plan_id=plan.id, plan_version=plan.version, goal=plan.goal, run_key=key,
        flow_run_id=flow_run_runtime.id, repo=str(source), base_snapshot=base,
        final_snapshot=_final_snapshot(reports, compiled.order, base), workspace=str(workspace.path),
        started_at=started_at, duration_s=round(time.monotonic() - started, 3),
        steps=[reports[s.id] for s in plan.steps],
    )
    if not report.ok:
        bad = [s.step_id for s in report.steps if s.status is StepStatus.FAILED]
        raise PlanRunFailed(f"plan '{plan.id}' failed at step(s) {', '.join(bad) or '?'}", report)
    logger.info("Plan %s completed; final snapshot %s", plan.id, report.final_snapshot[:12])
    return report


def _count_attempt(event: StepEvent, key: str, attempts: dict[str, int]) -> None:
    if event.run_key == key and event.status is StepStatus.RUNNING:
        attempts[event.step_id] = max(attempts.get(event.step_id, 0), event.attempt)


def _collect(
    futures: dict[str, PrefectFuture[StepResult]], plan: Plan, key: str, attempts: dict[str, int]
) -> dict[str, StepReport]:
    """Wait for every step, publishing each final status as it is reached."""
    step_of = {f.task_run_id: step_id for step_id, f in futures.items()}
    reports: dict[str, StepReport] = {}
    for future in as_completed(list(futures.values())):
        step_id = step_of[future.task_run_id]
        report = _step_report(plan, step_id, future, attempts.get(step_id, 0))
        reports[step_id] = report
        publish(StepEvent(run_key=key, step_id=step_id, status=report.status,
                          attempt=report.attempts, message=report.reason or ""))
    return reports


def _step_report(plan: Plan, step_id: str, future: PrefectFuture[StepResult], attempts: int) -> StepReport:
    future.wait()  # makes .state the final state instead of a possibly lagging API read
    state = future.state
    tool = plan.step(step_id).tool
    if state.is_completed():
        result: StepResult = state.result()
        cached = state.name == "Cached"
        return StepReport(
            step_id=step_id, tool=tool, status=StepStatus.CACHED if cached else StepStatus.COMPLETED,
            attempts=0 if cached else result.attempts, cached=cached,
            duration_s=None if cached else result.duration_s, snapshot=result.snapshot,
            diff_stat=result.changes.stat_line(), output=result.output,
        )
    if state.is_pending() or state.is_scheduled():
        return StepReport(step_id=step_id, tool=tool, status=StepStatus.NOT_RUN,
                          reason="not run: a step it depends on did not complete")
    exc = state.result(raise_on_failure=False)
    return StepReport(step_id=step_id, tool=tool, status=StepStatus.FAILED, attempts=attempts,
                      reason=str(exc) if isinstance(exc, BaseException) else state.message)


def _final_snapshot(reports: dict[str, StepReport], order: list[str], base: str) -> str:
    """The snapshot of the last step (in dependency order) that reached one."""
    for step_id in reversed(order):
        snapshot = reports[step_id].snapshot
        if snapshot:
            return snapshot
    return base
