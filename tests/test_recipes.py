"""The recipe planner: deterministic plans, clear parameter errors, recipes run end to end."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import agentic_cli

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.flows import recipes as recipe_flows
from prefect_agentic.planners.recipes import FixLintParams, RecipeError, RecipePlanner
from prefect_agentic.workspace import mounted


def test_the_same_parameters_always_make_the_same_plan() -> None:
    planner = RecipePlanner()
    first = planner.plan("fix-lint", {"select": "[F401, I001]", "branch": "fix/imports"})
    assert first == planner.plan("fix-lint", FixLintParams(select=["F401", "I001"], branch="fix/imports"))
    assert first.planner is not None and (first.planner.name, first.planner.version) == ("recipes", "1.0.0")
    assert [s.id for s in first.steps] == ["lint", "tests-before", "fix", "format", "tests-after", "commit"]
    assert first.step("fix").args["select"] == ["F401", "I001"]


@pytest.mark.parametrize(("recipe", "params", "message"), [
    ("fix-it", {}, "unknown recipe 'fix-it'; known recipes: fix-lint, "),
    ("fix-lint", {"max_changed_lines": "many"}, "--param max_changed_lines: Input should be a valid integer"),
    ("fix-lint", {"brnach": "x"}, "--param brnach: Extra inputs are not permitted"),
    ("test-and-report", {"max_failures": "-1"}, "--param max_failures: Input should be greater than or equal to 0"),
])
def test_bad_recipe_parameters_name_the_parameter(recipe: str, params: dict[str, str], message: str) -> None:
    with pytest.raises(RecipeError, match=message.replace("[", r"\[")):
        RecipePlanner().plan(recipe, params)


def test_agentic_plan_writes_a_plan_that_agentic_validate_accepts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "plan.yaml"
    made = agentic_cli("plan", "fix-lint", "--param", "select=[F401]", "-o", str(out))
    assert made.returncode == 0, made.stderr
    checked = agentic_cli("validate", str(out))
    assert checked.returncode == 0 and "valid plan 'fix-lint' v1 with 6 steps" in checked.stdout
    bad = agentic_cli("plan", "fix-lint", "--param", "select")
    assert bad.returncode == 2 and "--param 'select': expected NAME=VALUE" in bad.stderr
    listed = agentic_cli("recipes")
    assert "fix-lint" in listed.stdout and "--param max_failures=0" in listed.stdout


@pytest.mark.usefixtures("prefect_api")
def test_fix_lint_fixes_the_demo_repo_and_commits_on_a_branch(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(example="demo")
    report = recipe_flows.fix_lint(repo=str(repo), params=FixLintParams(branch="agentic/lint"),
                      sandbox=SandboxSettings(image=sandbox_image))
    assert report.ok, [(s.step_id, s.reason) for s in report.steps]
    steps = {s.step_id: s for s in report.steps}
    assert steps["lint"].output["lint_violations"] == 5
    assert steps["fix"].output["lint_violations"] == 0
    assert steps["tests-after"].output["passed"] == 4
    with mounted(Path(report.workspace)):  # the run unmounted its workspace when it ended
        branch_head = subprocess.run(["git", "rev-parse", "agentic/lint"], cwd=report.workspace,
                                     capture_output=True, text=True, check=True).stdout.strip()
    assert branch_head == steps["commit"].output["commit"] == report.final_snapshot
    assert subprocess.run(["git", "branch", "--list", "agentic/lint"], cwd=repo, capture_output=True,
                          text=True).stdout == ""  # the user's repository gets no branch


@pytest.mark.usefixtures("prefect_api")
def test_test_and_report_reports_the_suite(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    report = recipe_flows.test_and_report(repo=str(make_repo(example="demo")), sandbox=SandboxSettings(image=sandbox_image))
    assert report.ok
    assert report.steps[0].output["passed"] == 4 and report.steps[0].output["tests_failed"] == 0
