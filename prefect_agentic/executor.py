"""Executes one step: tool call in the sandbox, snapshot, evaluation.

This module drives no flow or task (``tasks/step.py`` wraps it in a task) and
talks to no Prefect API (events come from its records, see ``record/events.py``).
Run resources (the workspace, its sandbox and the budget meter) are opened once per run and process and shared by the run's
steps. So is the run's redactor (``run_redactor``), which knows every secret of the run: every
record passes it (the audit log's and the default recorder), and so does an exception before it
leaves a step.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Literal

import git
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from prefect_agentic.blocks.budget import Budget
from prefect_agentic.blocks.sandbox_settings import SandboxSettings, run_limit_name
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.budget import BudgetMeter, BudgetWarning
from prefect_agentic.chaos.injector import ChaosInjector
from prefect_agentic.chaos.spec import ChaosSpec
from prefect_agentic.concurrency import forget_limit
from prefect_agentic.errors import PolicyDeniedError, SandboxLimitError, StepFailed
from prefect_agentic.evaluator import Verdict, VerdictKind, evaluate
from prefect_agentic.guard import StepGuard
from prefect_agentic.pins import RunPins, pack_version
from prefect_agentic.plan.models import Step
from prefect_agentic.policy import PolicyDecision, approval_rules, protected_path_changes
from prefect_agentic.record.outcome import error_kind
from prefect_agentic.record.recorder import LoggingRecorder, Recorder
from prefect_agentic.sandbox.runner import Sandbox, open_sandbox
from prefect_agentic.secrets import Redactor, load_step_secrets, run_secret_values
from prefect_agentic.tools.base import Tool, ToolContext
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.workspace import AGENTIC_DIR, ChangeSummary, Workspace


class RunContext(BaseModel):
    """What every step of a run needs to know about the run (serializable)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_key: str
    plan_id: str
    workspace: Path
    workspace_epoch: str
    base_snapshot: str
    sandbox: SandboxSettings
    policy: ToolPolicy = Field(default_factory=ToolPolicy)
    budget: Budget = Field(default_factory=Budget)
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    secret_names: list[str] = Field(default_factory=list)
    """Every secret the plan's steps name. Each process of the run loads them all into the run's
    redactor, so that a secret one step wrote into the workspace is redacted wherever another step
    shows it, on a resume after that step (now cached) and on another task worker too."""
    started_at: float = Field(default_factory=time.time, description="Epoch seconds; budgets count from here.")
    chaos: ChaosSpec | None = None
    """Faults to inject (a chaos run); None, the default, injects nothing and costs one check a step."""
    pins: RunPins | None = None
    """The versions the run started with (``prefect_agentic.pins``); step cache keys use its tool versions."""
    tool_versions: dict[str, str] = Field(default_factory=dict)
    """The adapter version each tool runs with: the pinned one, or the installed one after an upgrade switch."""
    image_id: str | None = None
    """The sandbox image (by content digest) the run's containers start from; None: the configured tag's."""
    steps_on: Literal["local", "task-workers"] = "local"
    """Where steps run: in the flow run's process, or on task workers (``tasks/remote_step.py``)."""
    snapshot_remote: str | None = None
    """The bare repository snapshots travel through when steps run on task workers (``snapshot_remote``)."""
    sandbox_key: str | None = None
    """Labels this process's containers (default: the run key); a task worker's own, so that two
    workers on one Docker engine never remove each other's containers."""


def run_tool(run: RunContext, name: str) -> type[Tool]:
    """The adapter ``name`` runs with in ``run`` (its pinned version, else the newest installed)."""
    return default_registry().get(name, run.tool_versions.get(name))


def pinned_tool_version(run: RunContext, name: str) -> str:
    """The tool version a step's cache key holds: the pinned one, so that no completed step of a
    run is done again because the installed pack changed."""
    if run.pins is not None and name in run.pins.tools:
        return run.pins.tools[name]
    return run_tool(run, name).version


class StepResult(BaseModel):
    """A completed step: its output, the snapshot it produced, and the verdict."""

    step_id: str
    tool: str
    tool_version: str
    input_snapshot: str
    snapshot: str
    changes: ChangeSummary
    output: dict[str, Any]
    verdict: Verdict
    attempts: int
    duration_s: float
    finished_at: datetime
    image_id: str


@dataclass
class RunResources:
    workspace: Workspace
    sandbox: Sandbox
    meter: BudgetMeter
    redactor: Redactor
    recorder: Recorder
    """Records to the log until the audit log takes over (``flows/audit.py``); both redact."""
    approved_steps: set[str] = field(default_factory=set)  # steps whose approval gate said yes
    run_limit: str | None = None
    """The run's own concurrency limit, deleted when the run ends."""


_resources: dict[str, RunResources] = {}
_resources_lock = threading.Lock()
_redactors: dict[str, Redactor] = {}
_redactors_lock = threading.Lock()


def run_redactor(run: RunContext) -> Redactor:
    """The run's redactor in this process: every secret given to the run or named by its steps.

    Made apart from ``run_resources`` because the audit log needs it before the
    run's sandbox may be opened (that needs the image the run is pinned to).
    """
    with _redactors_lock:
        found = _redactors.get(run.run_key)
        if found is None:
            found = _redactors[run.run_key] = Redactor(run_secret_values(run.secrets, run.secret_names))
        return found


def run_resources(run: RunContext) -> RunResources:
    """The run's workspace and sandbox in this process, opened on first use."""
    redactor = run_redactor(run)
    with _resources_lock:
        found = _resources.get(run.run_key)
        if found is None:
            workspace = Workspace(run.workspace, run.sandbox.workspace_owner())
            sandbox = open_sandbox(run.sandbox, run.workspace, run.sandbox_key or run.run_key, image_id=run.image_id)
            meter = BudgetMeter(run.budget, started=run.started_at)
            found = _resources[run.run_key] = RunResources(
                workspace, sandbox, meter, redactor, LoggingRecorder(redactor),
                run_limit=run_limit_name(run.run_key) if run.sandbox.max_sandboxes_per_run else None)
            meter.on_warning = partial(_warn_budget, found)
        return found


def _warn_budget(resources: RunResources, warning: BudgetWarning) -> None:
    """The soft limit: a log line and a record (the audit log turns it into a Prefect event)."""
    logging.getLogger("prefect_agentic.budget").warning("%s", warning.message())
    resources.recorder.record("budget", {"event": "warning", "meter": warning.meter,
                                         "used": warning.used, "limit": warning.limit})


def open_run_keys() -> list[str]:
    """The runs whose resources are open in this process (read without the lock: signal-safe)."""
    return list(_resources)


def close_run_resources(run_key: str) -> None:
    """Remove the run's containers; called when the flow ends, however it ends."""
    with _resources_lock:
        found = _resources.pop(run_key, None)
    with _redactors_lock:
        _redactors.pop(run_key, None)
    if found is not None:
        found.sandbox.close()
        if found.run_limit:
            forget_limit(found.run_limit)


def execute_step(step: Step, run: RunContext, input_snapshot: str, attempt: int) -> StepResult:
    """Run ``step`` from ``input_snapshot``; raise ``StepFailed`` if its criteria are unmet.

    The attempt's outcome is recorded (``attempt_finished``) before it counts as done,
    whichever way it ended. An error leaves redacted: its text may quote the workspace
    (a file name, git's complaint), and Prefect stores and logs it as the task's result.
    """
    resources = run_resources(run)
    started = time.monotonic()
    try:
        result = _attempt(step, run, input_snapshot, attempt)
    except Exception as exc:  # noqa: BLE001 - raised again, redacted
        error = resources.redactor.exception(exc)
        resources.recorder.record("attempt_finished", {
            "attempt": attempt, "outcome": "retry" if getattr(error, "retryable", False) else "fail",
            "error_kind": error_kind(error), "error": str(error),
            "duration_s": round(time.monotonic() - started, 3)}, step_id=step.id)
        raise error
    resources.recorder.record("attempt_finished", {"attempt": attempt, "outcome": "ok", "snapshot": result.snapshot,
                                                   "duration_s": result.duration_s}, step_id=step.id)
    return result


def _attempt(step: Step, run: RunContext, input_snapshot: str, attempt: int) -> StepResult:
    tool_cls = run_tool(run, step.tool)
    resources = run_resources(run)
    started = time.monotonic()
    recorder = resources.recorder
    guard = _step_guard(step, run, resources, attempt)
    recorder.record("attempt_started", {"attempt": attempt, "input_snapshot": input_snapshot,
                                        "tool": tool_cls.name, "tool_version": tool_cls.version,
                                        "args": step.args, "image_id": resources.sandbox.image_id,
                                        "pack": pack_version()},
                    step_id=step.id)
    workspace = resources.workspace
    # Full before the step ran, by what earlier steps left (their snapshot, or files under .agentic, which
    # the reset keeps): not this step's doing, and a larger limit would not help (an image keeps its size).
    found_full = f"step '{step.id}' found the workspace full before it ran"
    with _within_size_limit(run, workspace, found_full, "and the host could not write to it (the reset, the "
                            "report directory)", _START_AFRESH), \
            workspace.checkout(input_snapshot, exclusive=step.writes_workspace) as path:
        relative_reports = f"{AGENTIC_DIR}/reports/{step.id}/{attempt}"
        workspace.prepare_reports(relative_reports)
        if workspace.is_full():
            raise _workspace_full(run, found_full, "by what earlier steps left in it", _START_AFRESH)
        ctx = ToolContext(
            sandbox=resources.sandbox,
            workspace=path,
            reports_path=relative_reports,
            step_id=step.id,
            base_snapshot=run.base_snapshot,
            attempt=attempt,
            timeout_seconds=step.timeout_seconds or run.sandbox.timeout_seconds,
            recorder=recorder,
            env=guard.secret_env,
            network=step.network,
            guard=guard,
        )
        chaos = None if run.chaos is None else ChaosInjector(run.chaos, recorder, tool_cls.name, step.id, attempt)
        with resources.sandbox.step_slot():
            if chaos is None:
                output = tool_cls().invoke(step.args, ctx)
            else:
                chaos.start_attempt()
                chaos.before_tool()
                ctx = dataclasses.replace(ctx, reports_filter=chaos.reports_filter())
                with chaos.around_tool(resources.sandbox):
                    output = tool_cls().invoke(step.args, ctx)
                chaos.after_tool()
        filled = f"step '{step.id}' filled the workspace"
        if workspace.is_full():
            raise _workspace_full(run, filled, "and further writes failed")
        snapshot = input_snapshot
        if step.writes_workspace:
            with _within_size_limit(run, workspace, filled, "and the host could not write its snapshot"):
                snapshot = workspace.snapshot(f"agentic snapshot: {run.plan_id}/{step.id}",
                                              f"{run.plan_id}/{step.id}")
        changes = workspace.changes(input_snapshot, snapshot)
    _check_protected_paths(step, run, changes, recorder)
    # File names are workspace content: the verdict and the step's result hold them redacted.
    changes = resources.redactor.model(changes)
    criteria = step.success.merged_over(dict(tool_cls.default_success))
    verdict = evaluate(criteria, output, changes)
    recorder.record("verdict", {  # the recorder redacts it: the diff is workspace content
        "attempt": attempt, "verdict": verdict.model_dump(mode="json"), "snapshot": snapshot,
        "output": output.model_dump(mode="json"), "changes": changes.model_dump(mode="json"),
        "diff": _attempt_diff(resources.workspace, input_snapshot, snapshot)}, step_id=step.id)
    if verdict.kind is not VerdictKind.OK:
        raise StepFailed(step.id, _failure_reason(verdict, output.log),
                         retryable=verdict.kind is VerdictKind.RETRY,
                         output=output.model_dump(mode="json"),
                         attempt_snapshot=snapshot if snapshot != input_snapshot else None,
                         criteria=verdict.criteria)
    return StepResult(
        step_id=step.id,
        tool=tool_cls.name,
        tool_version=tool_cls.version,
        input_snapshot=input_snapshot,
        snapshot=snapshot,
        changes=changes,
        output=output.model_dump(mode="json"),
        verdict=verdict,
        attempts=attempt,
        duration_s=round(time.monotonic() - started, 3),
        finished_at=datetime.now(timezone.utc),
        image_id=resources.sandbox.image_id,
    )


_RAISE_LIMIT = "raise SandboxSettings.workspace_size if it needs more"
_START_AFRESH = "remove the run's workspace and its image under $AGENTIC_HOME/workspaces to start it afresh"


def _workspace_full(run: RunContext, who: str, what: str,
                    advice: str = _RAISE_LIMIT) -> SandboxLimitError:
    """The step's failure once its size-limited workspace is full, naming the limit."""
    return SandboxLimitError(f"{who}: its size limit ({run.sandbox.workspace_size}) was reached {what} ({advice})")


@contextmanager
def _within_size_limit(run: RunContext, workspace: Workspace, who: str, what: str,
                       advice: str = _RAISE_LIMIT) -> Iterator[None]:
    """Out of space while the host writes the workspace is the step's size limit, named.

    A step may leave less room than the host's own writes need (the snapshot's git
    objects; the reset and the report directory, when what an earlier step left under
    ``.agentic``, which the reset keeps, filled it). Those fail with ENOSPC, which would
    otherwise show as a raw git or OS error.
    """
    try:
        yield
    except (OSError, git.GitCommandError) as exc:
        if not workspace.out_of_space(exc):
            raise
        raise _workspace_full(run, who, f"{what} (No space left on device)", advice) from exc


def _step_guard(step: Step, run: RunContext, resources: RunResources, attempt: int) -> StepGuard:
    """Arm the step's guard with its secrets and charge the step (or the retry) to the budget.

    The guard redacts with the run's redactor, which learns the step's secrets first: what
    this step prints of any secret of the run, one an earlier step wrote into a file too, is hidden.
    """
    secret_env = load_step_secrets(step, run.policy, run.secrets)
    resources.redactor.add(secret_env.values())
    approved = step.id in resources.approved_steps
    if not approved and (step.requires_approval or approval_rules(run.policy, step, default_registry())):
        raise PolicyDeniedError("approval", f"step '{step.id}' needs approval and no approval gate "
                                            "approved it in this run")
    guard = StepGuard(step.id, run.policy, resources.meter, resources.recorder,
                      resources.redactor, secret_env=secret_env, approved=approved)
    guard.charge("steps" if attempt == 1 else "retries")
    return guard


def _check_protected_paths(step: Step, run: RunContext, changes: ChangeSummary, recorder: Recorder) -> None:
    touched = protected_path_changes(run.policy, changes)
    if not touched:
        return
    pattern, paths = next(iter(touched.items()))
    decision = PolicyDecision(f"change of {paths}", False, f"protected_paths:{pattern}",
                              f"the step changed protected path(s) {paths}")
    recorder.record("policy_decision", {"level": "change", **decision.as_record()}, step_id=step.id)
    raise PolicyDeniedError(str(decision.rule), decision.reason)


def _attempt_diff(workspace: Workspace, before: str, after: str) -> str | None:
    """The attempt's diff, for the audit log (stored there as a content-addressed object)."""
    return workspace.diff(before, after) if after != before else None


def _failure_reason(verdict: Verdict, log: str) -> str:
    tail = log.strip().splitlines()[-15:]
    return verdict.summary() + ("\n" + "\n".join(tail) if tail else "")
