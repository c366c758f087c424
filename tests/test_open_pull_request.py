"""open-pull-request: push a branch to a remote and write (or open on GitHub) the change request."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from github_server import FakeGitHub
from prefect.blocks.system import Secret
from pydantic import SecretStr
from test_secrets import files_containing

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.flows.recipes import open_pull_request
from prefect_agentic.github import GitHubClient, GitHubError
from prefect_agentic.planners.recipes import OpenPullRequestParams, RecipePlanner
from prefect_agentic.policy import approval_rules, auto_approves
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.workspace import mounted

BRANCH = "fix/mean-division"
TOKEN = "ghp-test-7d41c09a5e"
STATE_DIRS = [Path(os.environ["PREFECT_HOME"]), Path(os.environ["AGENTIC_HOME"])]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def policy(*, github: bool = False) -> ToolPolicy:
    """Lets a run without a human push (auto_approve), and grants the steps their secrets."""
    token = ["github-token"] if github else []
    return ToolPolicy(auto_approve=["git:push"],
                      secret_grants={"push": ["git-remote", *token], "pull-request": token})


@pytest.fixture
def stats(history_repo, tmp_path: Path) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """The stats example and a bare remote holding its main branch (as a hosted repository would)."""
    repo = history_repo("stats")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(repo, "push", "-q", str(remote), "main")
    return repo, remote


@pytest.fixture
def github(stats: tuple[Path, Path]) -> Iterator[FakeGitHub]:
    server = FakeGitHub("octo/stats", TOKEN, stats[1]).start()
    yield server
    server.stop()


def run(repo: Path, remote: Path, image: str, **params: object):  # type: ignore[no-untyped-def]
    return open_pull_request(repo=str(repo), ref=BRANCH, params=OpenPullRequestParams(branch=BRANCH, **params),
                             policy=policy(github=params.get("backend") == "github"),
                             secrets={"git-remote": SecretStr(str(remote))},
                             sandbox=SandboxSettings(image=image), return_state=True)


def test_the_push_step_is_the_one_an_approval_gate_stops() -> None:
    plan = RecipePlanner().plan("open-pull-request", {"branch": BRANCH})
    registry = default_registry()
    assert approval_rules(ToolPolicy(), plan.step("push"), registry) == ["operation git:push", "push"]
    assert [s.id for s in plan.steps if approval_rules(ToolPolicy(), s, registry)] == ["push"]
    assert not auto_approves(ToolPolicy(), plan.step("push"), registry)
    assert auto_approves(policy(), plan.step("push"), registry)


@pytest.mark.usefixtures("prefect_api")
def test_the_branch_is_pushed_and_the_change_request_written(stats, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo, remote = stats
    report = run(repo, remote, sandbox_image).result()
    assert report.ok, [(s.step_id, s.reason) for s in report.steps]
    steps = {s.step_id: s for s in report.steps}
    head = git(repo, "rev-parse", BRANCH)
    assert git(remote, "rev-parse", f"refs/heads/{BRANCH}") == head
    assert steps["push"].output["pushed"] == "new branch"
    request = steps["pull-request"].output
    assert (request["title"], request["head_commit"], request["base_commit"]) == (
        "Divide the sum exactly in mean", head, git(repo, "rev-parse", "main"))
    body = request["body"]
    assert "- Divide the sum exactly in mean\n" in body
    assert "1 files, +1 -1 against `main`" in body and "| `stats/core.py` | +1 -1 |" in body
    passed = steps["tests"].output["passed"]
    assert passed > 0 and f"{passed} passed, 0 failed, 0 errors, 0 skipped" in body
    assert (request["risk"], request["risk_reasons"]) == ("medium", ["changes code without changing tests"])
    with mounted(Path(report.workspace)):  # the run unmounted its workspace when it ended
        written = Path(report.workspace, ".agentic", "reports", "pull-request", "1", "change-request.md")
        assert written.read_text() == f"# {request['title']}\n\n{body}"
    assert str(remote) not in report.model_dump_json()
    assert files_containing(STATE_DIRS[0], str(remote)) == files_containing(STATE_DIRS[1], str(remote)) == []


@pytest.mark.usefixtures("prefect_api")
def test_a_push_the_remote_rejects_fails_without_naming_the_remote(stats, tmp_path: Path, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo, remote = stats
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    (other / "NOTES.md").write_text("someone else's work\n")
    git(other, "add", "-A")
    git(other, "-c", "user.name=Other", "-c", "user.email=o@example.invalid", "commit", "-qm", "other")
    git(other, "push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}")
    failure = run(repo, remote, sandbox_image).result(raise_on_failure=False)
    assert isinstance(failure, PlanRunFailed)
    push = {s.step_id: s for s in failure.report.steps}["push"]
    assert f"to branch '{BRANCH}' failed: rejected: [rejected] (fetch first)" in str(push.reason)
    assert "pushes are never forced" in str(push.reason)
    assert str(remote) not in failure.report.model_dump_json()
    assert git(remote, "rev-parse", f"refs/heads/{BRANCH}") == git(other, "rev-parse", "HEAD")


@pytest.mark.usefixtures("prefect_api")
def test_the_github_backend_opens_one_pull_request_with_the_token_from_a_secret_block(  # type: ignore[no-untyped-def]
        stats, github: FakeGitHub, sandbox_image: str) -> None:
    repo, remote = stats
    Secret(value=TOKEN).save("github-token", overwrite=True)
    report = run(repo, remote, sandbox_image, backend="github", repository="octo/stats",
                 api_url=github.api_url).result()
    assert report.ok, [(s.step_id, s.reason) for s in report.steps]
    opened = {s.step_id: s for s in report.steps}["pull-request"].output
    [pull] = github.pulls
    assert (opened["number"], opened["url"], opened["created"]) == (1, pull["html_url"], True)
    assert (pull["title"], pull["body"], pull["base"]["ref"]) == (opened["title"], opened["body"], "main")
    assert pull["head"]["sha"] == git(repo, "rev-parse", BRANCH)
    assert {r.headers["authorization"] for r in github.requests} == {f"Bearer {TOKEN}"}

    again = run(repo, remote, sandbox_image, backend="github", repository="octo/stats",
                api_url=github.api_url, title="Fix mean() for uneven values").result()
    updated = {s.step_id: s for s in again.steps}["pull-request"].output
    assert (updated["number"], updated["created"]) == (1, False)
    assert len(github.pulls) == 1 and github.pulls[0]["title"] == "Fix mean() for uneven values"
    assert files_containing(STATE_DIRS[0], TOKEN) == files_containing(STATE_DIRS[1], TOKEN) == []


def test_github_refusals_say_what_to_check(stats, github: FakeGitHub) -> None:  # type: ignore[no-untyped-def]
    request = {"title": "t", "body": "b", "head": BRANCH, "base": "main"}
    with GitHubClient(github.api_url, "octo/stats", "wrong-token") as client, \
            pytest.raises(GitHubError, match=r"HTTP 401: Bad credentials \(check the token"):
        client.open_pull_request(**request)
    with GitHubClient(github.api_url, "octo/stats", TOKEN) as client, \
            pytest.raises(GitHubError, match=r"HTTP 422: Validation Failed; head invalid \(is the head branch pushed"):
        client.open_pull_request(**request)  # the branch was never pushed
    with GitHubClient(github.api_url, "octo/other", TOKEN) as client, \
            pytest.raises(GitHubError, match=r"HTTP 404: Not Found \(check the repository name"):
        client.open_pull_request(**request)
