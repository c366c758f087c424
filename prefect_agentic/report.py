"""What a plan run reports: every step's outcome and the snapshot the run ended on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from prefect_agentic.export import ExportResult
from prefect_agentic.plan.models import PlannerInfo
from prefect_agentic.record.progress import StepStatus


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
    attempt_snapshot: str | None = Field(
        default=None,
        description="A failed step's last attempt's changes, kept for diagnosis; nothing runs on them.",
    )

    @property
    def ok(self) -> bool:
        return self.status in (StepStatus.COMPLETED, StepStatus.CACHED)


class PlanRevision(BaseModel):
    """A plan version adopted during the run: after a re-plan, or a human's decision."""

    version: int
    reason: str
    planner: PlannerInfo | None = None
    steps: list[str] = Field(default_factory=list, description="The steps it added or replaced.")


class RunReport(BaseModel):
    """The outcome of a plan run: every step, and the snapshot it ended on.

    ``stopped`` says why the run stopped before running every step when
    something other than a failed step stopped it (a budget, a rejected
    approval); such a run keeps its work and can be resumed. ``steps`` are
    those of the last plan version (``plan_version``); reports of steps that
    failed under an earlier version and were replaced are in ``superseded``.
    """

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
    stopped: str | None = None
    revisions: list[PlanRevision] = Field(default_factory=list)
    superseded: list[StepReport] = Field(default_factory=list)
    exported: ExportResult | None = Field(
        default=None, description="Where the final snapshot was exported (the flow's `export` parameter).")

    @property
    def ok(self) -> bool:
        return self.stopped is None and all(s.ok for s in self.steps)


def outcome_line(output: dict[str, Any] | None) -> str:
    """A few words on what a step found: tests, violations, or the exit code."""
    if not output:
        return "-"
    if output.get("headline"):  # tools that say it themselves (pip, coverage, ghostwrite, scanners)
        return str(output["headline"])
    if output.get("first_bad_commit"):
        return f"first bad {output['first_bad_commit'][:12]} by {output['author']}: {output['subject']}"[:60]
    if "risk" in output and "title" in output:
        where = f"pull request #{output['number']}" if output.get("number") else "change request"
        return f"{where}, risk {output['risk']}: {output['title']}"[:60]
    if "tests_failed" in output:
        extra = "".join(f", {output[k]} {k}" for k in ("errors", "skipped") if output.get(k))
        return f"{output['passed']} passed, {output['failed']} failed{extra}"
    if output.get("lint_violations") is not None:
        rules = ", ".join(f"{code}×{n}" for code, n in list(output.get("by_rule", {}).items())[:4])
        return f"{output['lint_violations']} violations" + (f" ({rules})" if rules else "")
    if output.get("files_reformatted"):
        return f"{output['files_reformatted']} files reformatted"
    if "summary" in output and "files_changed" in output:
        return f"patched {len(output['files_changed'])} file(s): {output['summary']}"[:60]
    if output.get("pushed"):
        return f"pushed {output['commit'][:12]} ({output['pushed']})"
    if output.get("commit"):
        return f"commit {output['commit'][:12]}"
    return f"exit {output.get('exit_code')}"
