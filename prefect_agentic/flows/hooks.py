"""Run hooks of the ``run-plan`` flow that are not approval gates."""

from __future__ import annotations

from prefect import get_run_logger

from prefect_agentic.errors import BudgetExceededError
from prefect_agentic.executor import RunContext, run_resources
from prefect_agentic.plan.models import Step
from prefect_agentic.report import StepReport
from prefect_agentic.scheduler import Decision, Go, RunHook, Stop


class BudgetHook(RunHook):
    """Stops the run between steps once a hard limit of its budget is reached."""

    def __init__(self, run: RunContext) -> None:
        self.run = run

    def before_step(self, step: Step, done: dict[str, StepReport]) -> Decision:
        if not self.run.budget.limits():
            return Go()
        try:
            run_resources(self.run).meter.check()
        except BudgetExceededError as exc:
            return Stop(str(exc))
        return Go()

    def after_step(self, step: Step, report: StepReport) -> Decision:
        if not self.run.budget.limits():
            return Go()
        return self.before_step(step, {})


class HeldCanaryRollback(RunHook):
    """Rolls back a canary that a ``service_canary`` step left waiting (``hold``) when the run stops
    before promoting it: a rejected promotion gate, or one nobody answered in time."""

    def __init__(self, run: RunContext) -> None:
        self.run = run

    def after_stop(self, reason: str, reports: dict[str, StepReport]) -> str | None:
        held = [r for r in reports.values() if r.tool == "service_canary" and (r.output or {}).get("decision") == "held"]
        if not held:
            return None
        from prefect_agentic.tools.deploy.canary import roll_back_held

        resources = run_resources(self.run)
        logger = get_run_logger()
        undone = []
        for report in held:
            output = report.output or {}
            result = roll_back_held(resources.sandbox.client, output, reason, resources.recorder, report.step_id)
            if result is not None:
                logger.warning("canary of stack '%s' %s", output.get("stack"), result.reason)
                undone.append(f"canary of stack '{output.get('stack')}' (step '{report.step_id}') rolled back "
                              f"to stable {result.stable_after}")
        return "; ".join(undone) or None
