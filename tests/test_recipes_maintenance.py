"""upgrade-dependency, generate-tests and security-scan end to end on the bundled example repos.

Real Docker, real git, a real Prefect API. The commit of upgrade-dependency is
gated (``requires_approval``): the test approves it through the Prefect API,
as an approver answering the UI's resume form would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, agentic_cli, git_commit_all
from gate_helpers import Approver

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.flows import recipes as recipe_flows
from prefect_agentic.planners.recipes import (
    RECIPES,
    GenerateTestsParams,
    RecipeError,
    RecipePlanner,
    SecurityScanParams,
    UpgradeDependencyParams,
)
from prefect_agentic.report import RunReport
from prefect_agentic.workspace import mounted


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """centlib 1.0.0, 2.0.0 and 3.0.0 as wheels, built by the example's own script."""
    out = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run([sys.executable, str(EXAMPLES / "packages" / "build_wheelhouse.py"), str(out)], check=True,
                   capture_output=True)
    out.chmod(0o755)  # the sandbox user must be able to read it
    return out


def run(recipe_flow: Any, **kwargs: Any) -> RunReport:
    """The run report of a recipe flow, also when the run failed."""
    outcome = recipe_flow(**kwargs, return_state=True).result(raise_on_failure=False)
    report = outcome.report if isinstance(outcome, PlanRunFailed) else outcome
    assert isinstance(report, RunReport), outcome
    return report


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_the_new_recipes_make_valid_plans_and_name_bad_parameters(tmp_path: Path) -> None:
    upgrade = RecipePlanner().plan("upgrade-dependency", {"package": "centlib", "version": "2.0.0"})
    assert [s.id for s in upgrade.steps] == ["bump", "install", "tests", "lint", "commit"]
    assert upgrade.step("commit").requires_approval and upgrade.step("commit").args["branch"] == \
        "agentic/upgrade-centlib"
    generate = RecipePlanner().plan("generate-tests", {"packages": "[geometry]"})
    assert generate.step("coverage").success.min_coverage_gain == 0.1
    scan = RecipePlanner().plan("security-scan", {})
    assert [(s.id, s.success.new_findings) for s in scan.steps] == [("scan-bandit", 0)]
    with pytest.raises(RecipeError, match="--param version: Field required"):
        RecipePlanner().plan("upgrade-dependency", {"package": "centlib"})
    with pytest.raises(RecipeError, match="'pytest' is not a scanner tool .scanners: bandit."):
        RecipePlanner().plan("security-scan", {"scanners": "[pytest]"})
    out = tmp_path / "plan.yaml"
    made = agentic_cli("plan", "generate-tests", "--param", "packages=[geometry]", "-o", str(out))
    assert made.returncode == 0, made.stderr
    checked = agentic_cli("validate", str(out))
    assert checked.returncode == 0 and "valid plan 'generate-tests' v1 with 4 steps" in checked.stdout
    listed = {name: {p: d for p, d, _ in RECIPES[name].parameters()}
              for name in ("upgrade-dependency", "generate-tests", "security-scan")}
    assert listed["upgrade-dependency"]["package"] == "(required)"
    assert listed["security-scan"]["scanners"] == "[bandit]"


@pytest.mark.usefixtures("prefect_api")
def test_upgrade_dependency_pins_installs_tests_and_commits(make_repo, sandbox_image: str,  # type: ignore[no-untyped-def]
                                                            wheelhouse: Path) -> None:
    repo = make_repo(example="upgrade-demo")
    params = UpgradeDependencyParams(package="centlib", version="2.0.0",
                                     files=["requirements.txt", "pyproject.toml"])
    sandbox = SandboxSettings(image=sandbox_image, wheelhouse=str(wheelhouse))
    approver = Approver({"decision": "approve", "approver": "ada", "reason": "tests and lint are green"})
    report = run(recipe_flows.upgrade_dependency, repo=str(repo), params=params, sandbox=sandbox)
    approver.done()
    assert report.ok, [(s.step_id, s.reason) for s in report.steps]
    assert "### Approve step `commit` of plan `upgrade-dependency`?" in approver.questions[0]
    steps = {s.step_id: s for s in report.steps}
    assert steps["bump"].output["pinned"] == {"requirements.txt": "centlib==1.0.0",
                                              "pyproject.toml": "centlib==1.0.0"}
    assert steps["install"].output["installed"] == {"centlib": "2.0.0"}
    assert steps["tests"].output["passed"] == 2
    assert steps["lint"].output["lint_violations"] == 0
    branch = "agentic/upgrade-centlib"
    with mounted(Path(report.workspace)):  # the run unmounted its workspace when it ended
        assert git(report.workspace, "rev-parse", branch).strip() == steps["commit"].output["commit"]
        assert "centlib==2.0.0" in git(report.workspace, "show", f"{branch}:requirements.txt")
        assert 'dependencies = ["centlib==2.0.0"]' in git(report.workspace, "show", f"{branch}:pyproject.toml")
        assert git(report.workspace, "log", "--format=%s", "-1", branch).strip() == "Upgrade centlib to 2.0.0"


@pytest.mark.usefixtures("prefect_api")
def test_an_upgrade_that_breaks_the_tests_is_not_committed(make_repo, sandbox_image: str,  # type: ignore[no-untyped-def]
                                                          wheelhouse: Path) -> None:
    repo = make_repo(example="upgrade-demo")
    sandbox = SandboxSettings(image=sandbox_image, wheelhouse=str(wheelhouse))

    def upgrade(version: str) -> RunReport:
        return run(recipe_flows.upgrade_dependency, repo=str(repo), sandbox=sandbox,
                   params=UpgradeDependencyParams(package="centlib", version=version))

    report = upgrade("3.0.0")
    steps = {s.step_id: s for s in report.steps}
    assert not report.ok
    assert steps["install"].output["installed"] == {"centlib": "3.0.0"}
    assert steps["tests"].status == "failed"
    assert "ImportError: cannot import name 'to_cents' from 'centlib'" in (steps["tests"].reason or "")
    assert steps["commit"].status == "not_run"
    install = next(s for s in upgrade("9.9.9").steps if s.step_id == "install")
    assert install.status == "failed"
    assert "No matching distribution found for centlib==9.9.9" in (install.reason or "")


@pytest.mark.usefixtures("prefect_api")
def test_generate_tests_keeps_passing_tests_that_raise_coverage(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(example="gentests-demo")
    report = run(recipe_flows.generate_tests, repo=str(repo), params=GenerateTestsParams(packages=["geometry"]),
                 sandbox=SandboxSettings(image=sandbox_image))
    assert report.ok, [(s.step_id, s.reason) for s in report.steps]
    steps = {s.step_id: s for s in report.steps}
    generated = steps["generate"].output
    assert generated["functions"] == ["geometry.shapes.clamp", "geometry.shapes.perimeter",
                                      "geometry.shapes.ratio"]
    assert generated["kept"] == ["tests/generated/test_gen_geometry_shapes_clamp.py",
                                 "tests/generated/test_gen_geometry_shapes_perimeter.py"]
    assert list(generated["rejected"]) == ["geometry.shapes.ratio"]
    assert generated["rejected"]["geometry.shapes.ratio"].startswith("fails (")
    coverage = steps["coverage"].output
    assert coverage["tests_failed"] == 0 and coverage["passed"] == 3
    assert coverage["coverage_gain"] > 0 and coverage["coverage_percent"] > coverage["base_coverage_percent"]
    with mounted(Path(report.workspace)):  # the run unmounted its workspace when it ended
        committed = git(report.workspace, "show", "--name-only", "--format=", "agentic/generate-tests").split()
    assert committed == generated["kept"]


@pytest.mark.usefixtures("prefect_api")
def test_security_scan_fails_on_a_new_high_severity_finding_only(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(example="scan-demo")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "ops" / "disk.py").write_text((repo / "ops" / "disk.py").read_text() + (
        "\n\ndef run_script(script: str) -> int:\n    return subprocess.call(script, shell=True)\n"))
    git_commit_all(repo, "run scripts")
    settings = SandboxSettings(image=sandbox_image)
    risky = run(recipe_flows.security_scan, repo=str(repo), ref="feature", sandbox=settings)
    scan = risky.steps[0]
    assert not risky.ok and scan.status == "failed"
    assert "new findings: 1, allowed at most 0" in (scan.reason or "")
    assert [(f["rule"], f["severity"], f["path"]) for f in scan.output["new"]] == [("B602", "high", "ops/disk.py")]
    low = run(recipe_flows.security_scan, repo=str(repo), ref="feature", sandbox=settings,
              params=SecurityScanParams(severity="low", max_new_findings=1))
    output = low.steps[0].output
    assert low.ok and output["base_findings"] == 4 and output["new_findings"] == 1
    assert output["by_severity"] == {"high": 1, "low": 4}
    # assert in a test, import subprocess, subprocess without a shell, a partial path: all in the base
    assert sorted(f["rule"] for f in output["findings"]) == ["B101", "B404", "B602", "B603", "B607"]
