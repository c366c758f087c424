"""triage-failure: the first bad commit of a failing test, found by git bisect in the sandbox."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, agentic_cli

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.flows.recipes import triage_failure
from prefect_agentic.planners.recipes import RECIPES, TriageFailureParams
from prefect_agentic.workspace import mounted

FAILING = "tests/test_stats.py::test_mean_of_uneven_values"


def git(repo: Path | str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def commit_with_subject(repo: Path, subject: str) -> str:
    return git(repo, "log", "--all", "--format=%H", "--fixed-strings", f"--grep={subject}")


def test_the_example_history_is_the_same_on_every_build(tmp_path: Path) -> None:
    builds = [subprocess.run([sys.executable, str(ROOT / "scripts" / "make_history_repo.py"),
                              str(EXAMPLES / "repos" / "stats-history.yaml"), str(tmp_path / name)],
                             capture_output=True, text=True, check=True).stdout for name in ("a", "b")]
    assert builds[0] == builds[1] and "fix/mean-division " in builds[0]
    assert git(tmp_path / "a", "rev-list", "--count", "main") == "7"


@pytest.mark.usefixtures("prefect_api")
def test_triage_failure_names_the_commit_that_broke_the_test(history_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = history_repo("stats")
    report = triage_failure(repo=str(repo), params=TriageFailureParams(test=FAILING, good="HEAD~6"),
                            sandbox=SandboxSettings(image=sandbox_image))
    assert report.ok, [(s.step_id, s.reason) for s in report.steps]
    found = report.steps[0].output
    culprit = commit_with_subject(repo, "Sum the values once")
    assert found["first_bad_commit"] == culprit
    assert (found["author"], found["author_email"], found["subject"]) == (
        "Bob Builder", "bob@example.invalid", "Sum the values once")
    assert found["files_changed"] == ["stats/core.py"]
    assert "-    return sum(values) / len(values)\n" in found["diff"]
    assert "+    return total // len(values)\n" in found["diff"]
    assert "assert 1 == 1.5" in found["failure_output"] and f"FAILED {FAILING}" in found["failure_output"]
    assert found["probes"], "bisect tested no commit"
    for probe in found["probes"]:  # every verdict agrees with where the culprit is
        is_ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", culprit, probe["commit"]],
                                     cwd=repo, check=False).returncode == 0
        assert probe["verdict"] == ("bad" if is_ancestor else "good"), probe
    with mounted(Path(report.workspace)):  # the run unmounted its workspace when it ended
        for where in (repo, Path(report.workspace)):  # bisect ran in the sandbox's own /tmp
            assert git(where, "for-each-ref", "refs/bisect") == ""


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize(("good", "bad", "message"), [
    ("HEAD~6", "HEAD~4", f"test {FAILING} passes at bad commit"),
    ("HEAD~2", "HEAD", f"test {FAILING} fails at good commit"),
])
def test_a_range_that_does_not_hold_the_regression_fails_with_the_reason(  # type: ignore[no-untyped-def]
        history_repo, sandbox_image: str, good: str, bad: str, message: str) -> None:
    state = triage_failure(repo=str(history_repo("stats")),
                           params=TriageFailureParams(test=FAILING, good=good, bad=bad),
                           sandbox=SandboxSettings(image=sandbox_image), return_state=True)
    failure = state.result(raise_on_failure=False)
    assert isinstance(failure, PlanRunFailed)
    assert message in str(failure.report.steps[0].reason)


def test_agentic_plan_writes_a_triage_plan_and_requires_the_test(tmp_path: Path) -> None:
    out = tmp_path / "triage.yaml"
    made = agentic_cli("plan", "triage-failure", "--param", f"test={FAILING}", "--param", "good=v1.0",
                       "-o", str(out))
    assert made.returncode == 0, made.stderr
    checked = agentic_cli("validate", str(out))
    assert checked.returncode == 0 and "valid plan 'triage-failure' v1 with 1 steps" in checked.stdout
    missing = agentic_cli("plan", "triage-failure", "--param", "good=v1.0")
    assert missing.returncode == 2 and "--param test: Field required" in missing.stderr
    listed = dict((name, default) for name, default, _ in RECIPES["triage-failure"].parameters())
    assert listed == {"test": "(required)", "good": "(required)", "bad": "HEAD", "timeout_seconds": "1800"}
