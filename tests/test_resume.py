"""Resume after a crash: SIGKILL the `agentic run` process mid-plan and run it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefect_agentic.record.audit import parse_log, verify

PLAN = """
id: resume
version: 1
goal: six writes, the fourth one slow
steps:
  - {id: s1, tool: shell, args: {command: "echo 1 >> log.txt"}, writes_workspace: true}
  - {id: s2, tool: shell, args: {command: "echo 2 >> log.txt"}, writes_workspace: true, depends_on: [s1]}
  - {id: s3, tool: shell, args: {command: "echo 3 >> log.txt"}, writes_workspace: true, depends_on: [s2]}
  - id: s4
    tool: shell
    args: {command: "touch .agentic/s4-started; sleep 3; echo 4 >> log.txt"}
    writes_workspace: true
    depends_on: [s3]
  - {id: s5, tool: shell, args: {command: "echo 5 >> log.txt"}, writes_workspace: true, depends_on: [s4]}
  - {id: s6, tool: shell, args: {command: "cat log.txt"}, depends_on: [s5]}
"""


def start_run(plan: Path, repo: Path, home: Path, image: str) -> subprocess.Popen[str]:
    """`agentic run` on the embedded default (no PREFECT_API_URL), in its own process group."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["AGENTIC_HOME"] = str(home)
    return subprocess.Popen(
        [sys.executable, "-m", "prefect_agentic.cli.main", "run", str(plan), "--repo", str(repo),
         "--image", image, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def finish(proc: subprocess.Popen[str]) -> dict:  # type: ignore[type-arg]
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


@pytest.mark.slow
def test_killed_run_resumes_from_cache_and_ends_on_the_same_snapshot(
    make_repo, sandbox_image: str, tmp_path: Path, docker_client  # type: ignore[no-untyped-def]
) -> None:
    repo = make_repo({"log.txt": "0\n"})
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)

    uninterrupted = finish(start_run(plan, repo, tmp_path / "home-a", sandbox_image))

    home = tmp_path / "home-b"
    proc = start_run(plan, repo, home, sandbox_image)
    wait_for(lambda: any(home.glob("workspaces/*/.agentic/s4-started")), timeout=120)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: CLI and its embedded server
    proc.wait()
    # not a glob class like [!.lock]: that also skips a workspace whose hash ends in c, k, l or o
    workspace = next(p for p in home.glob("workspaces/resume-*") if p.suffix != ".lock")
    assert "4" not in (workspace / "log.txt").read_text()
    [killed_log] = (home / "audit" / "runs").glob("*.jsonl")  # what was done is recorded, and no more
    lines = killed_log.read_bytes().splitlines()
    check = verify(lines)
    assert check.ok and not check.complete
    ends = [(r.kind, r.step) for r in parse_log(lines) if r.kind in ("step_finished", "attempt_started")]
    assert ends[-2:] == [("step_finished", "s3"), ("attempt_started", "s4")]

    resumed = finish(start_run(plan, repo, home, sandbox_image))
    status = {s["step_id"]: s["status"] for s in resumed["steps"]}
    assert status == {"s1": "cached", "s2": "cached", "s3": "cached",
                      "s4": "completed", "s5": "completed", "s6": "completed"}
    assert resumed["final_snapshot"] == uninterrupted["final_snapshot"]
    assert resumed["steps"][-1]["output"]["stdout"] == "0\n1\n2\n3\n4\n5\n"
    leftovers = docker_client.containers.list(
        all=True, filters={"label": f"org.prefect-agentic.run={resumed['run_key']}"})
    assert leftovers == []
