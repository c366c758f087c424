"""A healthy `agentic run` as its user sees it, and its result brought back into their repository.

One real run of the demo plan (Docker sandbox, Prefect's embedded API) is
shared by the tests: no WARNING on a healthy run (cached re-run too), the
summary reports the wall time with its parts, short ids work for `audit
verify`, `replay` and `export`, and `export` (CLI and flow parameter) makes a
branch in the user's repository without touching their branch, index or
worktree. Real git repositories throughout.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, agentic_cli, git_commit_all

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.export import ExportTarget, push_decision
from prefect_agentic.sandbox.runner import open_sandbox
from prefect_agentic.tools.base import StepTimeoutError, ToolContext

PLAN = EXAMPLES / "plans" / "fix-lint-demo.yaml"
SUMMARY = re.compile(r"Run succeeded in (?P<wall>[\d.]+)s \(start-up (?P<startup>[\d.]+)s, of which Prefect's "
                     r"API (?P<api>[\d.]+)s; plan (?P<plan>[\d.]+)s; run (?P<run>[\d.]+)s, of which steps "
                     r"(?P<steps>[\d.]+)s\)".replace(" ", r"\s+"))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _verbose_run(repo: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    embedded = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # the session server's, if set
    result = agentic_cli("-v", "run", str(PLAN), "--repo", str(repo), env={**embedded, "COLUMNS": "250"})
    return result, time.monotonic() - started


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> dict[str, Any]:
    repo = tmp_path_factory.mktemp("user") / "demo"
    shutil.copytree(EXAMPLES / "repos" / "demo", repo)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    git_commit_all(repo, "initial")
    result, waited = _verbose_run(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    flow_run_id = re.search(r"flow run ([0-9a-f-]{36})", result.stdout)
    snapshot = re.search(r"final\s+snapshot\s+([0-9a-f]{12})", result.stdout)
    assert flow_run_id and snapshot, result.stdout
    return {"repo": repo, "result": result, "waited": waited, "flow_run_id": flow_run_id.group(1),
            "snapshot": snapshot.group(1)}


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if "| WARNING" in line or "Warning:" in line]


def test_a_healthy_run_logs_no_warning_and_reports_the_time_the_user_waited(demo_run: dict[str, Any]) -> None:
    first = demo_run["result"]
    assert _warnings(first.stderr + first.stdout) == []
    assert "Starting Prefect's embedded API…" in first.stderr
    assert re.search(r"Prefect's embedded API is ready in [\d.]+s", first.stderr)
    parts = SUMMARY.search(first.stdout)
    assert parts, first.stdout
    wall, startup, api, plan, run, steps = (float(parts[k]) for k in
                                            ("wall", "startup", "api", "plan", "run", "steps"))
    assert abs(startup + plan + run - wall) <= 0.3  # the parts add up (each rounded to 0.1 s)
    assert api <= startup and steps <= run
    assert wall <= demo_run["waited"]  # measured inside the process the user waited for

    again, _ = _verbose_run(demo_run["repo"])  # every step from the cache
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("yes") >= 3  # the report's cached column
    assert _warnings(again.stderr + again.stdout) == []


def test_short_run_ids_for_audit_verify_and_replay(demo_run: dict[str, Any]) -> None:
    full = demo_run["flow_run_id"]
    embedded = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # the API the run reported to
    verify = agentic_cli("audit", "verify", full[:8], env=embedded)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"audit log of run {full}: ok" in verify.stdout
    replay = agentic_cli("replay", full[:6].upper())
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"replay of run {full}" in replay.stdout
    unknown = agentic_cli("replay", "zz")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no run id starts with 'zz' among "
                                                                 "runs with an audit log in "), unknown.stderr


def _state(repo: Path) -> dict[str, Any]:
    """Everything of the user's repository that exporting must leave alone."""
    files = {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    return {"head": git(repo, "symbolic-ref", "HEAD"), "head_commit": git(repo, "rev-parse", "HEAD"),
            "status": git(repo, "status", "--porcelain=v1", "--untracked-files=all"),
            "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(), "files": files}


def _dirty_clone(source: Path, target: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(source), str(target)], check=True)
    (target / "README.md").write_text("my unsaved notes\n")  # changed, not staged
    (target / "scratch.txt").write_text("untracked\n")
    tracked = next(p for p in sorted(target.rglob("*.py")) if ".git" not in p.parts)
    tracked.write_text(tracked.read_text() + "# staged by me\n")
    git(target, "add", str(tracked.relative_to(target)))
    return target


def test_export_makes_a_branch_and_leaves_a_dirty_checkout_alone(demo_run: dict[str, Any], tmp_path: Path) -> None:
    user = _dirty_clone(demo_run["repo"], tmp_path / "mine")
    before = _state(user)
    run = demo_run["flow_run_id"]
    done = agentic_cli("export", run[:8], "--into", str(user))
    assert done.returncode == 0, done.stdout + done.stderr
    branch = f"agentic/fix-lint-demo-{run[:8]}"
    assert done.stdout.startswith(f"branch {branch} -> {demo_run['snapshot']} in {user} (run {run}, completed)")
    assert _state(user) == before
    exported = git(user, "rev-parse", branch)
    assert exported.startswith(demo_run["snapshot"])
    assert git(user, "merge-base", exported, "main") == git(user, "rev-parse", "main")  # on top of their main
    assert git(user, "diff", "--stat", "main", branch)  # carries the run's changes

    git(user, "branch", "taken", "main")
    refused = agentic_cli("export", run, "--into", str(user), "--branch", "taken")
    assert refused.returncode == 2
    assert "branch 'taken' already exists" in refused.stderr and "--overwrite" in refused.stderr
    assert git(user, "rev-parse", "taken") == git(user, "rev-parse", "main")
    moved = agentic_cli("export", run, "--into", str(user), "--branch", "taken", "--overwrite")
    assert moved.returncode == 0 and "(was " in moved.stdout, moved.stderr
    assert git(user, "rev-parse", "taken") == exported
    checked_out = agentic_cli("export", run, "--into", str(user), "--branch", "main", "--overwrite")
    assert checked_out.returncode == 2 and "is checked out" in checked_out.stderr
    assert _state(user) == before


def test_export_pushes_to_a_remote_of_the_users_repository(demo_run: dict[str, Any], tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    user = _dirty_clone(demo_run["repo"], tmp_path / "mine")
    git(user, "remote", "add", "team", str(remote))
    done = agentic_cli("export", demo_run["flow_run_id"], "--into", str(user), "--branch", "lint-fix",
                       "--push", "team")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "pushed lint-fix to team"
    assert git(remote, "rev-parse", "lint-fix") == git(user, "rev-parse", "lint-fix")


def test_the_policy_decides_about_pushing() -> None:
    default = ToolPolicy()
    assert push_decision(default, "origin", "b", by_human=True).allowed  # the person at the CLI approves
    unattended = push_decision(default, "origin", "b", by_human=False)
    assert not unattended.allowed and "auto_approve" in unattended.reason
    assert push_decision(ToolPolicy(auto_approve=["export:push", "push"]), "origin", "b", by_human=False).allowed
    denied = push_decision(ToolPolicy(denied_operations=["*:push"]), "origin", "b", by_human=True)
    assert not denied.allowed and denied.rule == "denied_operations:*:push"


def test_the_flow_export_parameter(demo_run: dict[str, Any], tmp_path: Path) -> None:
    from prefect_agentic.flows.run_plan import run_plan
    from prefect_agentic.plan import load_plan

    user = _dirty_clone(demo_run["repo"], tmp_path / "mine")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(user, "remote", "add", "team", str(remote))
    before = _state(user)
    report = run_plan(plan=load_plan(PLAN), repo=str(demo_run["repo"]),
                      export=ExportTarget(into=str(user), branch="from-flow", push="team"))
    assert report.exported is not None and report.exported.branch == "from-flow"
    assert git(user, "rev-parse", "from-flow") == report.final_snapshot
    assert report.exported.pushed_to is None  # the default policy wants a person to approve a push
    assert "auto_approve" in (report.exported.push_refused or "")
    assert _state(user) == before

    with pytest.raises(Exception, match="branch 'from-flow' already exists"):  # refused before any step
        run_plan(plan=load_plan(PLAN), repo=str(demo_run["repo"]),
                 export=ExportTarget(into=str(user), branch="from-flow"))


def test_a_step_deadline_is_shared_by_its_commands(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"a.txt": "a\n"})
    sandbox = open_sandbox(SandboxSettings(image=sandbox_image), repo, f"deadline-{os.getpid()}")
    try:
        def context(deadline: float) -> ToolContext:
            return ToolContext(sandbox=sandbox, workspace=repo, reports_path=".agentic/reports/s",
                               step_id="s", base_snapshot="HEAD", attempt=1, timeout_seconds=600,
                               deadline=deadline)

        started = time.monotonic()
        with pytest.raises(StepTimeoutError, match=r"exceeded the step timeout of 600s and was killed"):
            context(time.monotonic() + 3).run(["sleep", "300"])  # 3 s left of the step's 600
        assert time.monotonic() - started < 120
        with pytest.raises(StepTimeoutError, match=r"did not start: the step used up its timeout of 600s"):
            context(time.monotonic() - 1).run(["true"])
    finally:
        sandbox.close()
