"""Collects what a planner or a human needs to know about a failure from the run's reports."""

from __future__ import annotations

from collections.abc import Mapping

from prefect_agentic.plan.graph import snapshot_sources
from prefect_agentic.plan.models import Plan
from prefect_agentic.planners.failure import FailedStep, FailureContext, capped
from prefect_agentic.record.progress import StepStatus
from prefect_agentic.report import StepReport
from prefect_agentic.secrets import Redactor
from prefect_agentic.workspace import Workspace


def failure_context(
    plan: Plan, reports: Mapping[str, StepReport], workspace: Workspace, base_snapshot: str, redactor: Redactor
) -> FailureContext:
    """The failed steps with their output and attempted change, and the run's diff before them.

    The diffs pass the run's ``redactor`` (before they are cut, so no secret is cut in two): they go
    to a model endpoint, out of the run. Reasons and outputs come from reports, redacted already.
    """
    sources = snapshot_sources(plan.steps)
    completed = [reports[s.id] for s in plan.steps if s.id in reports and reports[s.id].ok]
    failed: list[FailedStep] = []
    diff_until = base_snapshot
    for step in plan.steps:
        report = reports.get(step.id)
        if report is None or report.status is not StepStatus.FAILED:
            continue
        source = sources[step.id]
        start = (reports[source].snapshot if source else None) or base_snapshot
        if not failed:
            diff_until = start
        attempt = report.attempt_snapshot
        attempt_diff = (capped(redactor.text(workspace.diff(start, attempt)))
                        if attempt and workspace.has_commit(attempt) else "")
        failed.append(FailedStep(step=step, reason=report.reason or "(no reason given)",
                                 output=report.output, attempt_diff=attempt_diff))
    not_run = [s.id for s in plan.steps if s.id not in reports or reports[s.id].status is StepStatus.NOT_RUN]
    return FailureContext(plan=plan, failed=failed, completed=completed, not_run=not_run,
                          diff=capped(redactor.text(workspace.diff(base_snapshot, diff_until))))
