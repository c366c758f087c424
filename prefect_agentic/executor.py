"""Executes one step: tool call in the sandbox, snapshot, evaluation.

This module knows nothing about Prefect; ``tasks/step.py`` wraps it in a task.
Run resources (the workspace and its sandbox) are opened once per run and
process and shared by the run's steps.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.errors import StepFailed
from prefect_agentic.evaluator import Verdict, VerdictKind, evaluate
from prefect_agentic.plan.models import Step
from prefect_agentic.record.recorder import LoggingRecorder, Recorder
from prefect_agentic.sandbox.runner import WORKSPACE_MOUNT, Sandbox, open_sandbox
from prefect_agentic.tools.base import ToolContext
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
    recorder: Recorder = field(default_factory=LoggingRecorder)


_resources: dict[str, RunResources] = {}
_resources_lock = threading.Lock()


def run_resources(run: RunContext) -> RunResources:
    """The run's workspace and sandbox in this process, opened on first use."""
    with _resources_lock:
        found = _resources.get(run.run_key)
        if found is None:
            workspace = Workspace(run.workspace, run.sandbox.workspace_owner())
            sandbox = open_sandbox(run.sandbox, run.workspace, run.run_key)
            found = _resources[run.run_key] = RunResources(workspace, sandbox)
        return found


def close_run_resources(run_key: str) -> None:
    """Remove the run's containers; called when the flow ends, however it ends."""
    with _resources_lock:
        found = _resources.pop(run_key, None)
    if found is not None:
        found.sandbox.close()


def execute_step(step: Step, run: RunContext, input_snapshot: str, attempt: int) -> StepResult:
    """Run ``step`` from ``input_snapshot``; raise ``StepFailed`` if its criteria are unmet."""
    tool_cls = default_registry().get(step.tool)
    resources = run_resources(run)
    started = time.monotonic()
    recorder = resources.recorder
    recorder.record("attempt_started", {"attempt": attempt, "input_snapshot": input_snapshot,
                                        "tool": tool_cls.name, "tool_version": tool_cls.version,
                                        "args": step.args, "image_id": resources.sandbox.image_id},
                    step_id=step.id)
    with resources.workspace.checkout(input_snapshot, exclusive=step.writes_workspace) as path:
        relative_reports = f"{AGENTIC_DIR}/reports/{step.id}/{attempt}"
        report_dir = path / relative_reports
        report_dir.mkdir(parents=True, exist_ok=True)
        resources.workspace.hand_over(path / AGENTIC_DIR)
        ctx = ToolContext(
            sandbox=resources.sandbox,
            workspace=path,
            report_dir=report_dir,
            report_dir_in_sandbox=f"{WORKSPACE_MOUNT}/{relative_reports}",
            step_id=step.id,
            base_snapshot=run.base_snapshot,
            attempt=attempt,
            timeout_seconds=step.timeout_seconds or run.sandbox.timeout_seconds,
            recorder=recorder,
        )
        output = tool_cls().invoke(step.args, ctx)
        snapshot = input_snapshot
        if step.writes_workspace:
            snapshot = resources.workspace.snapshot(
                f"agentic snapshot: {run.plan_id}/{step.id}", f"{run.plan_id}/{step.id}"
            )
        changes = resources.workspace.changes(input_snapshot, snapshot)
    criteria = step.success.merged_over(dict(tool_cls.default_success))
    verdict = evaluate(criteria, output, changes)
    recorder.record("verdict", {"attempt": attempt, "verdict": verdict.model_dump(mode="json"),
                                "snapshot": snapshot, "output": output.model_dump(mode="json")},
                    step_id=step.id)
    if verdict.kind is not VerdictKind.OK:
        raise StepFailed(step.id, _failure_reason(verdict, output.log),
                         retryable=verdict.kind is VerdictKind.RETRY)
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


def _failure_reason(verdict: Verdict, log: str) -> str:
    tail = log.strip().splitlines()[-15:]
    return verdict.summary() + ("\n" + "\n".join(tail) if tail else "")
