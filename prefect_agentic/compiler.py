"""Compiles a validated plan into Prefect task submissions.

For every step, in dependency order, the compiler submits a task configured
from the step (``tasks.step.step_task``). A step receives the future of the
step whose snapshot it starts from and waits for all of its dependencies;
Prefect then runs independent steps in parallel and leaves dependents of a
failed step ``NotReady`` (not run) instead of running them.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect.futures import PrefectFuture

from prefect_agentic.executor import RunContext, StepResult
from prefect_agentic.plan.graph import snapshot_sources, topological_order
from prefect_agentic.plan.models import Plan
from prefect_agentic.plan.validation import check_plan
from prefect_agentic.tasks.step import step_task


@dataclass(frozen=True)
class CompiledPlan:
    plan: Plan
    order: list[str]
    sources: dict[str, str | None]

    def submit(
        self, run: RunContext, *, refresh_cache: bool = False
    ) -> dict[str, PrefectFuture[StepResult]]:
        """Submit every step to the flow's task runner; returns futures by step id."""
        futures: dict[str, PrefectFuture[StepResult]] = {}
        for step_id in self.order:
            step = self.plan.step(step_id)
            source = self.sources[step_id]
            task = step_task(step, self.plan.id, run.sandbox.timeout_seconds)
            if refresh_cache:
                task = task.with_options(refresh_cache=True)
            futures[step_id] = task.submit(
                step,
                run,
                input_result=futures[source] if source else None,
                wait_for=[futures[d] for d in step.depends_on],
            )
        return futures


def compile_plan(plan: Plan) -> CompiledPlan:
    """Check ``plan`` and work out the order and snapshot source of every step."""
    check_plan(plan, source=f"plan '{plan.id}'")
    return CompiledPlan(plan, topological_order(plan.steps), snapshot_sources(plan.steps))
