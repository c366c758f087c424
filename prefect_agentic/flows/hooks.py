"""Run hooks of the ``run-plan`` flow that are not approval gates."""

from __future__ import annotations

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
