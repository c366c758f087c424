"""Bad plan files get exactly one clear message naming the place; good ones load."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import EXAMPLES

from prefect_agentic.errors import PlanError
from prefect_agentic.plan import load_plan, parse_plan
from prefect_agentic.plan.graph import snapshot_sources, topological_order

BAD = sorted((Path(__file__).parent / "plans" / "bad").glob("*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: ...'"
    return first.removeprefix("# expect: ")


def test_there_are_a_dozen_bad_plans_or_more() -> None:
    assert len(BAD) >= 12


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_plan_gives_one_clear_message(path: Path) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert caught.value.source == str(path)
    assert len(caught.value.problems) == 1, caught.value.problems
    assert caught.value.problems[0].startswith(expected_message(path)), caught.value.problems[0]
    assert str(path) in str(caught.value)


def test_all_problems_are_reported_at_once() -> None:
    text = """
id: many-problems
goal: three mistakes
steps:
  - {id: a, tool: nope}
  - {id: b, tool: ruff, args: {mode: check}, depends_on: [zzz]}
  - {id: c, tool: pytest, args: {paths: tests}}
"""
    with pytest.raises(PlanError) as caught:
        parse_plan(text, source="inline")
    places = [p.split(":")[0] for p in caught.value.problems]
    assert places == ["steps[0] 'a'.tool", "steps[1] 'b'.depends_on", "steps[2] 'c'.args.paths"]
    assert caught.value.lines == [5, 6, 7]


def test_missing_file_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read the file"):
        load_plan(tmp_path / "nope.yaml")


def test_example_plan_loads_with_the_issue_field_names() -> None:
    plan = load_plan(EXAMPLES / "plans" / "fix-lint-demo.yaml")
    fix = plan.step("fix")
    assert (fix.retries, fix.timeout_seconds, fix.writes_workspace) == (2, 120, True)
    assert fix.success.lint_violations == 0
    assert plan.step("tests").success.tests_failed == 0
    assert topological_order(plan.steps) == ["lint", "fix", "tests"]
    assert snapshot_sources(plan.steps) == {"lint": None, "fix": None, "tests": "fix"}


def test_json_plans_load_too() -> None:
    plan = parse_plan('{"id": "j", "goal": "g", "steps": [{"id": "a", "tool": "shell", '
                      '"args": {"command": "true"}}]}')
    assert plan.steps[0].args == {"command": "true"}


def test_readers_in_parallel_start_from_the_latest_writer() -> None:
    plan = parse_plan("""
id: diamond
goal: fan out after a write, fan in before the next
steps:
  - {id: w1, tool: shell, args: {command: "true"}, writes_workspace: true}
  - {id: r1, tool: shell, args: {command: "true"}, depends_on: [w1]}
  - {id: r2, tool: shell, args: {command: "true"}, depends_on: [w1]}
  - {id: w2, tool: shell, args: {command: "true"}, depends_on: [r1, r2], writes_workspace: true}
  - {id: r3, tool: shell, args: {command: "true"}, depends_on: [w2]}
""")
    assert snapshot_sources(plan.steps) == {
        "w1": None, "r1": "w1", "r2": "w1", "w2": "w1", "r3": "w2",
    }
