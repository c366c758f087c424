"""Durable model calls: a run killed right after a re-plan, run again, asks the model nothing.

Real parts only: the `agentic run` CLI in its own process against the test
session's Prefect server, real Docker sandboxes, real git, and a local
OpenAI-compatible HTTP server that counts the requests it gets. The server
has exactly one answer scripted: a second request for it would get HTTP 400
and the run would fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import agentic_cli
from llm_server import API_KEY
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import resume_flow_run
from test_gate_suspend import SERVE, _wait_for

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.plan import parse_plan
from prefect_agentic.record.audit import parse_log

pytestmark = pytest.mark.usefixtures("prefect_api")

PLAN = """
id: durable
goal: A marker file exists
steps:
  - {id: note, tool: shell, writes_workspace: true, args: {command: "echo checked > NOTES.txt"}}
  - {id: check, tool: shell, depends_on: [note], args: {command: "test -f FIXED"}}
"""
REPAIR = {"id": "durable", "goal": "g", "planner": {"rationale": "make the marker"}, "steps": [
    {"id": "repair", "tool": "shell", "writes_workspace": True,
     "args": {"command": "touch .agentic/repair-started; sleep 3; touch FIXED"}},
    {"id": "check", "tool": "shell", "depends_on": ["repair"], "args": {"command": "test -f FIXED"}},
]}


def start_run(plan: Path, repo: Path, home: Path, image: str, block: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AGENTIC_HOME": str(home)}  # PREFECT_API_URL: the session's server
    return subprocess.Popen(
        [sys.executable, "-m", "prefect_agentic.cli.main", "run", str(plan), "--repo", str(repo),
         "--image", image, "--llm-block", block, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def audit_records(home: Path, since: set[Path]) -> list:  # type: ignore[type-arg]
    [log] = set((home / "audit" / "runs").glob("*.jsonl")) - since
    return parse_log(log.read_bytes().splitlines())


@pytest.mark.slow
def test_a_run_killed_after_a_replan_resumes_with_the_same_plan_and_no_model_request(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server, tmp_path) -> None:
    LLMEndpoint(base_url=llm_server.base_url, model="scripted-1", api_key=API_KEY,
                prompt_price_per_1k=0.01, completion_price_per_1k=0.03).save("durable-llm", overwrite=True)
    llm_server.reply(REPAIR)  # the only answer the "model" will ever give
    repo = make_repo({"README.md": "x\n"})
    plan, home = tmp_path / "plan.yaml", tmp_path / "home"
    plan.write_text(PLAN)

    proc = start_run(plan, repo, home, sandbox_image, "durable-llm")
    wait_for(lambda: any(home.glob("workspaces/*/.agentic/repair-started")) or proc.poll() is not None,
             timeout=180)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # right after the re-plan: v2's first step is running
    proc.wait()
    assert len(llm_server.seen) == 1
    killed = audit_records(home, set())
    [plan_v2] = [r.data["plan"] for r in killed if r.kind == "plan" and r.data["version"] == 2]
    [asked] = [r.data for r in killed if r.kind == "model_call"]
    assert asked["cached"] is False and asked["purpose"] == "replan" and asked["cost"] > 0

    before = set((home / "audit" / "runs").glob("*.jsonl"))
    rerun = start_run(plan, repo, home, sandbox_image, "durable-llm")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    report = json.loads(out)

    assert len(llm_server.seen) == 1  # zero repeated model requests
    assert report["plan_version"] == 2
    assert {s["step_id"]: s["status"] for s in report["steps"]} == {
        "note": "cached", "repair": "completed", "check": "completed"}
    resumed = audit_records(home, before)
    [same] = [r.data["plan"] for r in resumed if r.kind == "plan" and r.data["version"] == 2]
    assert same == plan_v2  # the same plan, rationale and all
    [replayed] = [r.data for r in resumed if r.kind == "model_call"]
    assert replayed["cached"] is True and replayed["cost"] == 0.0
    assert replayed["response"] == asked["response"]  # the recorded answer, for `agentic replay`
    assert not [r for r in resumed if r.kind == "budget" and r.data.get("source") == "llm"]

    # `agentic replay` re-makes the re-plan from the logged answer; the model is not asked
    replay = subprocess.run(
        [sys.executable, "-m", "prefect_agentic.cli.main", "replay", report["flow_run_id"], "--json"],
        env={**os.environ, "AGENTIC_HOME": str(home)}, capture_output=True, text=True, check=False)
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    replayed = json.loads(replay.stdout)
    assert replayed["same"] and replayed["replans"] == [
        {"version": 2, "answers": 1, "used": 1, "same": True, "problem": ""}]
    assert len(llm_server.seen) == 1


GATED_REPAIR = {"id": "durable", "goal": "g", "planner": {"rationale": "make the marker, with approval"},
                "steps": [{"id": "repair", "tool": "shell", "writes_workspace": True, "requires_approval": True,
                           "args": {"command": "touch FIXED"}},
                          {"id": "check", "tool": "shell", "depends_on": ["repair"],
                           "args": {"command": "test -f FIXED"}}]}


@pytest.mark.slow
def test_a_run_suspended_at_a_gate_after_a_replan_resumes_without_a_model_request(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server) -> None:
    """A deployed run suspends at the gate of its re-planned step; on approval the runner runs the
    flow again from the top: the failed step fails again and the re-plan comes from the cache."""
    llm_server.reply(GATED_REPAIR)  # the only answer
    runner = subprocess.Popen([sys.executable, "-c", SERVE], env={**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = {"base_url": llm_server.base_url, "model": "scripted-1", "api_key": {"value": API_KEY}}
    repo = make_repo({"README.md": "x\n"})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                flow_run = run_deployment(
                    "run-plan/gates-suspend", timeout=0,
                    parameters={"plan": parse_plan(PLAN).model_dump(mode="json"),
                                "repo": str(repo),
                                "sandbox": {"image": sandbox_image}, "loop": {"llm": endpoint}})
                break
            except ObjectNotFound:  # the runner has not registered the deployment yet
                assert time.monotonic() < deadline
                time.sleep(1)
        suspended = _wait_for(flow_run.id, lambda r: r.state.is_paused() or r.state.is_final(), "paused", 180)
        assert suspended.state.name == "Suspended", suspended.state
        assert suspended.state.state_details.pause_key.startswith("approve-repair-")
        assert len(llm_server.seen) == 1
        resume_flow_run(flow_run.id, run_input={"decision": "approve", "approver": "ada"})
        finished = _wait_for(flow_run.id, lambda r: r.state.is_final(), "finished", 180)
        assert finished.state.is_completed(), finished.state
        assert len(llm_server.seen) == 1  # the run went through its re-plan again, from the cache
    finally:
        runner.terminate()
        runner.wait(timeout=30)


def test_agentic_run_goal_plans_with_the_model_once_and_a_rerun_takes_the_same_plan(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server, tmp_path) -> None:
    LLMEndpoint(base_url=llm_server.base_url, model="scripted-1", api_key=API_KEY).save("goal-llm", overwrite=True)
    llm_server.reply({"id": "x", "goal": "x", "planner": {"rationale": "one note"}, "steps": [
        {"id": "note", "tool": "shell", "writes_workspace": True, "args": {"command": "echo hi > NOTE"}}]})
    repo, home = make_repo({"README.md": "x\n"}), tmp_path / "home"
    reports = []
    for _ in range(2):
        proc = start_run_goal("Leave a note", repo, home, sandbox_image, "goal-llm")
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        reports.append(json.loads(out))
    first, second = reports
    assert first["plan_id"] == second["plan_id"] == "leave-a-note"
    assert [s["status"] for s in first["steps"]] == ["completed"]
    assert [s["status"] for s in second["steps"]] == ["cached"]  # the same plan, so the same step
    assert len(llm_server.seen) == 1  # the second run's plan came from the durable call's cache
    wrong = subprocess.run([sys.executable, "-m", "prefect_agentic.cli.main", "run", "--goal", "x"],
                           capture_output=True, text=True, check=False)
    assert wrong.returncode == 2 and "--goal needs --llm-block" in wrong.stderr


def test_agentic_run_goal_with_a_model_it_cannot_reach_ends_in_one_clear_error(make_repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The plan is asked for before any flow run exists: the failed request's task run says nothing
    of its own (Prefect once warned there that it had no flow run to send its logs to)."""
    LLMEndpoint(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0).save("unreachable-llm", overwrite=True)
    repo = make_repo({"README.md": "x\n"})
    proc = agentic_cli("run", "--goal", "Leave a note", "--repo", str(repo), "--llm-block", "unreachable-llm",
                       env={**os.environ, "AGENTIC_HOME": str(tmp_path / "home")}, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip() == ("error: --goal: LLM endpoint block 'unreachable-llm' (model m) cannot be "
                                   "reached after max_retries=0: Connection error.")


def start_run_goal(goal: str, repo: Path, home: Path, image: str, block: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AGENTIC_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "prefect_agentic.cli.main", "run", "--goal", goal, "--repo", str(repo),
         "--image", image, "--llm-block", block, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
