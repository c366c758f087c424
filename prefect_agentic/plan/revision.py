"""Revised plans: version n+1 keeps what completed and replaces the rest.

A re-plan (or a human's retry or skip) never touches completed steps: they
stay in the new version exactly as they ran, so their snapshots stay valid
and nothing re-executes them. Only the remaining work is replaced.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from prefect_agentic.plan.models import Plan, PlannerInfo, Step


def next_version(
    plan: Plan, completed: Collection[str], steps: Sequence[Step], planner: PlannerInfo | None = None
) -> Plan:
    """Version n+1 of ``plan``: its completed steps as they are, then ``steps``.

    A new step that depends on nothing is made to depend on the frontier (the
    completed steps no other completed step depends on): revised work goes on
    from where the run is, not from the base commit. The result is not checked;
    ``check_plan`` does that.
    """
    kept = [s for s in plan.steps if s.id in completed]
    frontier = frontier_of(kept)
    new = [s if s.depends_on or not frontier else s.model_copy(update={"depends_on": frontier})
           for s in steps]
    return Plan(id=plan.id, version=plan.version + 1, goal=plan.goal,
                planner=planner or plan.planner, steps=[*kept, *new])


def frontier_of(steps: Sequence[Step]) -> list[str]:
    """Ids of the steps that no other of ``steps`` depends on, in plan order."""
    needed = {dep for s in steps for dep in s.depends_on}
    return [s.id for s in steps if s.id not in needed]


def remaining(plan: Plan, completed: Collection[str]) -> list[Step]:
    """The steps of ``plan`` that did not complete, in plan order."""
    return [s for s in plan.steps if s.id not in completed]


def without(steps: Sequence[Step], step_id: str) -> list[Step]:
    """``steps`` less ``step_id``; what depended on it depends on its dependencies instead."""
    dropped = next(s for s in steps if s.id == step_id)
    result = []
    for step in steps:
        if step.id == step_id:
            continue
        if step_id in step.depends_on:
            deps = [d for d in step.depends_on if d != step_id]
            deps += [d for d in dropped.depends_on if d not in deps]
            step = step.model_copy(update={"depends_on": deps})
        result.append(step)
    return result


def changed_completed_steps(old: Plan, new: Plan, completed: Collection[str]) -> list[str]:
    """Problems if ``new`` drops or alters a step that completed under ``old``."""
    problems = []
    for step_id in completed:
        before = old.step(step_id)
        try:
            after = new.step(step_id)
        except KeyError:
            problems.append(f"completed step '{step_id}' is missing from plan v{new.version}")
            continue
        if after.model_dump() != before.model_dump():
            problems.append(f"completed step '{step_id}' was changed in plan v{new.version}")
    return problems
