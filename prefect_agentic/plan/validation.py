"""Checks of a plan's meaning: tools, tool arguments, criteria and the step graph.

Every problem is reported with its place (``steps[1] 'fix'.args.mode``), and
all problems are reported at once, so one round of editing fixes the file.
"""

from __future__ import annotations

from collections import Counter

from pydantic import ValidationError

from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanError, ToolNotFoundError
from prefect_agentic.plan.criteria import OUTCOME_FIELDS, output_field
from prefect_agentic.plan.graph import concurrent_writer_pairs, find_cycle
from prefect_agentic.plan.models import Plan, Step
from prefect_agentic.tools.registry import ToolRegistry, default_registry


def step_place(index: int, step_id: object) -> str:
    """How problems name a step: its position and, when known, its id."""
    return f"steps[{index}] '{step_id}'" if isinstance(step_id, str) else f"steps[{index}]"


def check_plan(plan: Plan, registry: ToolRegistry | None = None, source: str = "plan",
               policy: ToolPolicy | None = None) -> Plan:
    """Return ``plan`` if it is valid, else raise ``PlanError`` listing every problem.

    With a ``policy``, a plan that could only run by breaking it is invalid too.
    """
    problems = plan_problems(plan, registry or default_registry(), policy)
    if problems:
        raise PlanError(source, problems)
    return plan


def plan_problems(plan: Plan, registry: ToolRegistry, policy: ToolPolicy | None = None) -> list[str]:
    problems: list[str] = []
    for index, step in enumerate(plan.steps):
        problems += _step_problems(index, step, registry)
    problems += _graph_problems(plan)
    if policy is not None and not problems:
        from prefect_agentic.policy import static_problems

        problems += static_problems(policy, plan, registry)
    return problems


def _step_problems(index: int, step: Step, registry: ToolRegistry) -> list[str]:
    place = step_place(index, step.id)
    try:
        tool = registry.get(step.tool)
    except ToolNotFoundError as exc:
        return [f"{place}.tool: {exc}"]
    problems = []
    try:
        args = tool.parse_args(step.args)
    except ValidationError as exc:
        for err in exc.errors():
            loc = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in err["loc"])
            problems.append(f"{place}.args{loc}: {err['msg']} (tool '{tool.name}')")
    else:
        if tool.changes_files(args) and not step.writes_workspace:
            problems.append(
                f"{place}.writes_workspace: this '{tool.name}' call changes files; "
                "set writes_workspace: true so its changes become the next snapshot"
            )
    output_fields = tool.Output.model_fields
    for name in step.success.set_fields():
        if name in OUTCOME_FIELDS and output_field(name) not in output_fields:
            supported = [f for f in OUTCOME_FIELDS if output_field(f) in output_fields]
            problems.append(
                f"{place}.success.{name}: tool '{tool.name}' reports no '{output_field(name)}'; "
                f"criteria it supports: {', '.join(supported)}"
            )
    if (step.success.max_changed_lines is not None or step.success.unchanged_paths) and not (
        step.writes_workspace
    ):
        problems.append(
            f"{place}.success: max_changed_lines and unchanged_paths judge a step's changes, "
            "but the step does not set writes_workspace: true"
        )
    return problems


def _graph_problems(plan: Plan) -> list[str]:
    problems = []
    positions = {s.id: i for i, s in enumerate(plan.steps)}
    for step_id, count in Counter(s.id for s in plan.steps).items():
        if count > 1:
            where = ", ".join(str(i) for i, s in enumerate(plan.steps) if s.id == step_id)
            problems.append(f"steps: id '{step_id}' is used by {count} steps (positions {where})")
    for index, step in enumerate(plan.steps):
        place = step_place(index, step.id)
        for dep in step.depends_on:
            if dep == step.id:
                problems.append(f"{place}.depends_on: the step depends on itself")
            elif dep not in positions:
                problems.append(f"{place}.depends_on: unknown step '{dep}'")
    if problems:
        return problems
    cycle = find_cycle(plan.steps)
    if cycle:
        return [f"steps: dependency cycle {' -> '.join(cycle)}"]
    for writer, other in concurrent_writer_pairs(plan.steps):
        problems.append(
            f"{step_place(positions[writer], writer)}: writes the workspace but may run at the "
            f"same time as '{other}'; order them with depends_on"
        )
    return problems
