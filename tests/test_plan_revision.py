"""Revised plan versions: completed steps kept as they ran, the rest replaced."""

from __future__ import annotations

from prefect_agentic.plan import parse_plan
from prefect_agentic.plan.models import PlannerInfo, Step
from prefect_agentic.plan.revision import changed_completed_steps, next_version, remaining, without

PLAN = parse_plan("""
id: p
goal: g
steps:
  - {id: a, tool: shell, args: {command: "true"}}
  - {id: b, tool: shell, writes_workspace: true, args: {command: "true"}, depends_on: [a]}
  - {id: c, tool: shell, args: {command: "false"}, depends_on: [b]}
  - {id: d, tool: shell, args: {command: "true"}, depends_on: [c]}
""")


def test_next_version_keeps_completed_steps_and_chains_new_roots_to_the_frontier() -> None:
    new = [Step(id="fix", tool="shell", args={"command": "true"}, writes_workspace=True),
           Step(id="c", tool="shell", args={"command": "true"}, depends_on=["fix"])]
    info = PlannerInfo(name="llm", version="1.0.0")
    v2 = next_version(PLAN, ["a", "b"], new, info)
    assert (v2.id, v2.version, v2.goal, v2.planner) == ("p", 2, "g", info)
    assert [s.id for s in v2.steps] == ["a", "b", "fix", "c"]
    assert v2.step("fix").depends_on == ["b"] and v2.step("c").depends_on == ["fix"]
    assert changed_completed_steps(PLAN, v2, ["a", "b"]) == []


def test_skipping_a_step_hands_its_dependencies_to_its_dependents() -> None:
    rest = remaining(PLAN, ["a", "b"])
    assert [s.id for s in rest] == ["c", "d"]
    assert [(s.id, s.depends_on) for s in without(rest, "c")] == [("d", ["b"])]


def test_a_version_that_drops_or_alters_a_completed_step_is_caught() -> None:
    altered = PLAN.model_copy(update={"version": 2, "steps": [
        PLAN.steps[0].model_copy(update={"args": {"command": "echo changed"}}), *PLAN.steps[2:]]})
    assert changed_completed_steps(PLAN, altered, ["a", "b"]) == [
        "completed step 'a' was changed in plan v2", "completed step 'b' is missing from plan v2"]
