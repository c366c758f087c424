"""The ``run-plan`` flow: runs any plan on any git repository.

The plan is a flow parameter (stored on the flow run, so what a run executes
never changes under it) and is compiled into tasks when the flow starts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.exceptions import Pause
from prefect.runtime import flow_run as flow_run_runtime
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import SecretStr

from prefect_agentic.blocks.audit_storage import AuditStorage
from prefect_agentic.blocks.budget import Budget
from prefect_agentic.blocks.gate_defaults import GateDefaults
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.chaos import ChaosSpec
from prefect_agentic.compiler import compile_plan
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.executor import RunContext, close_run_resources
from prefect_agentic.export import (
    ExportError,
    ExportResult,
    ExportTarget,
    check_target,
    default_branch,
    export_snapshot,
    push_branch,
    push_decision,
)
from prefect_agentic.flows.audit import RunAudit
from prefect_agentic.flows.hooks import BudgetHook, HeldCanaryRollback
from prefect_agentic.gates import ApprovalGate
from prefect_agentic.loop.settings import LoopSettings
from prefect_agentic.pins import DEFAULT_UPGRADE_POLICY, UpgradePolicy
from prefect_agentic.plan.models import Plan
from prefect_agentic.record.events import RunIds
from prefect_agentic.record.progress import StepEvent, StepStatus, subscribe
from prefect_agentic.report import RunReport, StepReport
from prefect_agentic.scheduler import RunHook, StepScheduler
from prefect_agentic.secrets import check_given_secrets, named_secrets
from prefect_agentic.settings import snapshot_remote_setting, uses_embedded_api
from prefect_agentic.snapshot_remote import SnapshotRemote, SnapshotRemoteError, run_ref
from prefect_agentic.workspace import (
    Workspace,
    resolve_base,
    run_key,
    run_workspace,
    unmounted_at_end,
    workspace_lock,
)

DEFAULT_CONCURRENCY = 4
StepsOn = Literal["local", "task-workers"]


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
    policy: ToolPolicy | None = None,
    budget: Budget | None = None,
    secrets: dict[str, SecretStr] | None = None,
    loop: LoopSettings | None = None,
    gates: GateDefaults | None = None,
    audit: AuditStorage | None = None,
    request_id: str | None = None,
    export: ExportTarget | None = None,
    chaos: ChaosSpec | None = None,
    on_upgrade: UpgradePolicy = DEFAULT_UPGRADE_POLICY,
    steps_on: StepsOn = "local",
) -> RunReport:
    """Run ``plan`` on the repository at ``repo`` starting from commit ``ref``.

    The repository is cloned into a private run workspace; the user's branches
    and working tree are never touched. With ``fresh``, cached step results are
    ignored (and replaced). ``policy`` (default: the default ``ToolPolicy``)
    says what steps may do; ``budget`` bounds what the run may spend;
    ``secrets`` are values steps may receive when the policy grants them
    (otherwise Prefect Secret blocks of the same names are used). With
    ``loop``, a failed step leads to a re-plan and/or a human's decision
    instead of ending the run. ``gates`` says how approval gates wait
    (timeouts, poll interval, pause or suspend). Every decision goes to the
    run's audit log in ``audit`` (default: ``AuditStorage.configured()``);
    ``request_id`` correlates the run with what asked for it (default: the
    root flow run's id). With ``export``, a successful run's final snapshot
    becomes a branch of the repository it names (and is pushed there when the
    policy allows it; see ``prefect_agentic.export``). ``chaos`` injects faults
    (docs/guides/chaos.md). ``on_upgrade`` says what a resumed run does when the worker's pack lacks a
    version the run pinned: ``pinned`` stops it (``VersionPinError``), ``upgrade`` goes on with the
    installed version (docs/guides/upgrades.md). With ``steps_on="task-workers"`` each step runs
    on a task worker (``agentic task-worker``) and snapshots travel through the bare repository
    ``AGENTIC_SNAPSHOT_REMOTE`` names (docs/guides/task-workers.md). The workspace is limited to
    ``sandbox.workspace_size``; where that cannot be enforced, ``WorkspaceSizeLimitError`` stops the run
    before any step (an empty ``workspace_size`` opts out, recorded in ``run_started``). Raises
    ``PlanRunFailed`` (the flow run fails) when any step failed or could not run; the report is attached.
    """
    logger = get_run_logger()
    started_at, started = datetime.now(timezone.utc), time.monotonic()
    policy = policy or ToolPolicy()
    compiled = compile_plan(plan, policy)
    check_given_secrets(secrets or {}, steps_on)
    source = Path(repo).resolve()
    base = resolve_base(source, ref)
    key = run_key(plan.id, source, base)
    sandbox = sandbox or SandboxSettings()
    path = run_workspace(key)
    # One process at a time per workspace: a run's processes never write its log at once.
    with workspace_lock(path), unmounted_at_end(path, logger), ExitStack() as at_end:
        # Fails closed (WorkspaceSizeLimitError) where the limit cannot be enforced: no step runs.
        workspace = Workspace.prepare(source, base, path, size=sandbox.workspace_size)
        if sandbox.workspace_size is None:
            logger.warning("Workspace %s has no size limit (SandboxSettings.workspace_size is empty: opted "
                           "out); this run's steps can fill the disk that holds it", path)
        remote = _snapshot_remote(steps_on, workspace, key, base)
        run = RunContext(run_key=key, plan_id=plan.id, workspace=workspace.path,
                         workspace_epoch=workspace.epoch if remote is None else _remote_epoch(remote, fresh),
                         base_snapshot=base, sandbox=sandbox,
                         policy=policy, budget=budget or Budget(), secrets=secrets or {},
                         secret_names=named_secrets(plan.steps), chaos=chaos,
                         steps_on=steps_on, snapshot_remote=None if remote is None else str(remote.path))
        logger.info("Plan %s v%s on %s@%s (workspace %s)", plan.id, plan.version, source, base[:12],
                    workspace.path)
        if export is not None:  # a target that cannot take the result is refused before any step runs
            check_target(export, export.branch or default_branch(plan.id, str(flow_run_runtime.id)))
        ids = RunIds(str(flow_run_runtime.id), key, plan.id,
                     request_id or str(flow_run_runtime.root_flow_run_id))
        trail = RunAudit.open(plan, run, ids, audit, on_upgrade, repo=str(source), ref=ref, fresh=fresh,
                              workspace_limit=_workspace_limit(sandbox))
        at_end.callback(trail.anchor)  # finished, crashed or suspended: the head this process leaves
        run = trail.run  # with the versions it is pinned to
        scheduler = StepScheduler(compiled, run, hooks=run_hooks(plan, run, loop, gates), refresh_cache=fresh)
        with _chaos_window(chaos, trail):
            reports = _run_steps(scheduler, trail, key)
        # The report leaves the run (summary artifact, the flow's result, the failure's message) and
        # quotes the workspace (failure reasons, outputs): it holds the run's secrets redacted.
        report = trail.log.redactor.model(RunReport(
            plan_id=plan.id, plan_version=scheduler.plan.version, goal=plan.goal, run_key=key,
            flow_run_id=flow_run_runtime.id, repo=str(source), base_snapshot=base,
            final_snapshot=_final_snapshot(reports, scheduler.compiled.order, base),
            workspace=str(workspace.path), started_at=started_at,
            duration_s=round(time.monotonic() - started, 3),
            steps=[reports[s.id] for s in scheduler.plan.steps], stopped=scheduler.stopped,
            revisions=scheduler.revisions, superseded=scheduler.superseded,
        ))
        export_failed = None
        if export is not None and report.ok:
            try:
                report.exported = export_result(export, report, policy)
            except ExportError as exc:
                export_failed = exc
        trail.finished(report)
    if export_failed is not None:
        raise ExportError(f"every step succeeded, but the export failed: {export_failed} "
                          f"(`agentic export {flow_run_runtime.id}` can retry it)")
    if not report.ok:
        raise PlanRunFailed(_failure_summary(report), report)
    logger.info("Plan %s completed; final snapshot %s", plan.id, report.final_snapshot[:12])
    return report


def export_result(target: ExportTarget, report: RunReport, policy: ToolPolicy) -> ExportResult:
    """Export the run's final snapshot as ``target`` asks; push only where the policy lets a flow run."""
    logger = get_run_logger()
    branch = target.branch or default_branch(report.plan_id, str(report.flow_run_id))
    result = export_snapshot(Path(report.workspace), report.final_snapshot, Path(target.into), branch,
                             overwrite=target.overwrite)
    logger.info("Final snapshot %s exported to branch %s of %s", result.commit[:12], branch, result.repo)
    if target.push is not None:
        decision = push_decision(policy, target.push, branch, by_human=False)
        if decision.allowed:
            push_branch(Path(result.repo), target.push, branch)
            result.pushed_to = target.push
            logger.info("Branch %s pushed to %s", branch, target.push)
        else:
            result.push_refused = f"policy rule '{decision.rule}': {decision.reason}"
            logger.warning("Branch %s not pushed to %s: %s", branch, target.push, result.push_refused)
    return result


def _workspace_limit(sandbox: SandboxSettings) -> dict[str, object]:
    """The size limit of the run's workspace, for its ``run_started`` record.

    An explicit opt-out (an empty ``workspace_size``) is a choice an auditor must be able
    to find without reading the sandbox settings: it is recorded as ``opted_out``.
    """
    return {"size": sandbox.workspace_size, "opted_out": sandbox.workspace_size is None}


def _snapshot_remote(steps_on: StepsOn, workspace: Workspace, key: str, base: str) -> SnapshotRemote | None:
    """For steps on task workers: the snapshot remote, holding the run's base snapshot from now on."""
    if steps_on == "local":
        return None
    if uses_embedded_api():
        raise SnapshotRemoteError("steps on task workers need a Prefect server (set PREFECT_API_URL): "
                                  "task workers take their steps from the server's queue")
    configured = snapshot_remote_setting()
    if configured is None:
        raise SnapshotRemoteError("steps on task workers need a snapshot remote: set AGENTIC_SNAPSHOT_REMOTE "
                                  "to a bare repository path every task worker can reach")
    remote = SnapshotRemote.parse(configured).ensure()
    remote.push(workspace.path, base, run_ref(key, "base"))
    return remote


def _remote_epoch(remote: SnapshotRemote, fresh: bool) -> str:
    """The remote's epoch; a fresh run's own, so that no worker's cache answers its steps."""
    return f"{remote.epoch()}-fresh-{uuid.uuid4().hex}" if fresh else remote.epoch()


@contextmanager
def _chaos_window(chaos: ChaosSpec | None, trail: RunAudit) -> Iterator[None]:
    """While the run's steps run: its API faults hit Prefect's clients, a process kill may come
    (nothing for a run without chaos)."""
    with ExitStack() as stack:
        if chaos is not None and chaos.api_faults:
            # patches Prefect's clients: loaded by runs with API faults only
            from prefect_agentic.chaos import api as chaos_api

            stack.enter_context(chaos_api.active(chaos, trail.log))
        if chaos is not None and chaos.process_kills:
            from prefect_agentic.chaos import process

            stack.callback(process.disarm)
        yield


SETTLE_SECONDS = 30.0
"""How long a crashing run waits for its running steps to record how they ended."""


def _run_steps(scheduler: StepScheduler, trail: RunAudit, key: str) -> dict[str, StepReport]:
    """Run every step; a suspension at a gate is recorded as such, any other escape as a crash
    (after the steps still running ended, so that nothing is recorded after it)."""
    unsubscribe = subscribe(lambda e: _count_attempt(e, key, scheduler.attempts))
    try:
        return scheduler.run_all()
    except Pause as pause:  # suspended at a gate: a worker starts the run again once answered
        details = pause.state.state_details if pause.state else None
        trail.suspended(details.pause_key if details else None, details.pause_timeout if details else None)
        raise
    except BaseException as exc:  # noqa: BLE001 - raised again, redacted
        close_run_resources(key)  # the running steps' containers gone, they end at once...
        scheduler.settle(SETTLE_SECONDS)  # ...and record how before the crash record ends the log
        raise trail.crashed(exc)
    finally:
        unsubscribe()
        close_run_resources(key)
        trail.progress.flush()  # the bar's last write, while the run's chaos window is open


def _count_attempt(event: StepEvent, key: str, attempts: dict[str, int]) -> None:
    if event.run_key == key and event.status is StepStatus.RUNNING:
        attempts[event.step_id] = max(attempts.get(event.step_id, 0), event.attempt)


def _failure_summary(report: RunReport) -> str:
    bad = [s.step_id for s in report.steps if s.status is StepStatus.FAILED]
    if bad:
        why = f" ({report.stopped})" if report.stopped else ""
        return f"plan '{report.plan_id}' failed at step(s) {', '.join(bad)}{why}"
    return f"plan '{report.plan_id}' stopped: {report.stopped}"


def run_hooks(plan: Plan, run: RunContext, loop: LoopSettings | None = None,
              gates: GateDefaults | None = None) -> list[RunHook]:
    """The hooks that decide, between steps, whether the run goes on.

    The approval gate comes last: a budget that is spent stops the run before
    anyone is asked. With an LLM planner in the loop, an approver's requested
    changes are re-planned by it.
    """
    hooks: list[RunHook] = [BudgetHook(run), HeldCanaryRollback(run)]
    agent = None
    if loop is not None and (loop.llm is not None or loop.escalate):
        from prefect_agentic.loop.agent import AgentLoop  # the LLM planner: imported only when used

        agent = AgentLoop(run, loop)
        hooks.append(agent)
    changes = agent if agent is not None and loop is not None and loop.llm is not None else None
    hooks.append(ApprovalGate(plan, run, gates, changes=changes))
    return hooks


def _final_snapshot(reports: dict[str, StepReport], order: list[str], base: str) -> str:
    """The snapshot of the last step (in dependency order) that reached one."""
    for step_id in reversed(order):
        snapshot = reports[step_id].snapshot
        if snapshot:
            return snapshot
    return base
