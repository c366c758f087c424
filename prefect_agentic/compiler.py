"""Compiles a validated plan into what the scheduler needs to run it as Prefect tasks.

Every step becomes a task configured from the step (``tasks.step.step_task``);
the compiler works out the order of the steps and, for each step, the step
whose snapshot it starts from. ``scheduler.StepScheduler`` submits the tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.plan.graph import snapshot_sources, topological_order
from prefect_agentic.plan.models import Plan
from prefect_agentic.plan.validation import check_plan


@dataclass(frozen=True)
class CompiledPlan:
    plan: Plan
    order: list[str]
    sources: dict[str, str | None]


def compile_plan(plan: Plan, policy: ToolPolicy | None = None) -> CompiledPlan:
    """Check ``plan`` (against ``policy``, the default policy if none) and work out the
    order and snapshot source of every step."""
    check_plan(plan, source=f"plan '{plan.id}'", policy=policy or ToolPolicy())
    return CompiledPlan(plan, topological_order(plan.steps), snapshot_sources(plan.steps))
