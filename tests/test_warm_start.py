"""`agentic worker`: flow runs forked from a warm process, on a real Prefect server and Docker.

A deployed run suspends at its gate; once approved, the warm worker starts it
again as a child of its warm process (no new interpreter importing Prefect),
and it finishes with one verified audit chain. Killing a flow run's launcher
(what the worker does to stop a run) ends the forked engine too, the warm
process keeps serving, and it ends with its worker.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from deploy_helpers import PrefectStack, free_port, wait_for_state
from prefect.deployments import run_deployment
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings

from prefect_agentic.sandbox.runner import LABEL_MANAGED, LABEL_RUN

pytestmark = [pytest.mark.docker]

FINAL = {"Completed", "Failed", "Crashed", "Cancelled"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sandbox_image) -> Iterator[PrefectStack]:  # type: ignore[no-untyped-def]
    runtime = tempfile.mkdtemp(prefix="aw-")  # short: it holds unix sockets
    stack = PrefectStack(tmp_path_factory.mktemp("warm"), free_port(), extra_env={"XDG_RUNTIME_DIR": runtime})
    stack.start_server()
    try:
        for command in (("agentic", "init"), ("prefect", "--no-prompt", "deploy", "--name", "run-plan/default")):
            done = stack.run(*command)
            assert done.returncode == 0, done.stdout + done.stderr
        stack.start_worker("warm", warm=True)
        yield stack
    finally:
        stack.stop_workers()
        stack.stop_server()


def _warm_log(stack: PrefectStack) -> str:
    logs = list(Path(stack.env["XDG_RUNTIME_DIR"]).glob("prefect-agentic-warm-*/*.log"))
    return "".join(log.read_text() for log in logs)


def _submit(stack: PrefectStack, plan: dict, repo: Path, gates: dict | None = None) -> UUID:  # type: ignore[type-arg]
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        parameters = {"plan": plan, "repo": str(repo), **({"gates": gates} if gates else {})}
        return run_deployment("run-plan/default", timeout=0, parameters=parameters).id


def _wait(what: str, check, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError(what)


def test_an_approved_suspended_run_is_started_again_warm_and_finishes(stack: PrefectStack, make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"README.md": "x\n"})
    plan = {"id": "warm-gate", "goal": "resume warm", "steps": [
        {"id": "prepare", "tool": "shell", "writes_workspace": True, "args": {"command": "echo x > x.txt"}},
        {"id": "publish", "tool": "shell", "depends_on": ["prepare"], "requires_approval": True,
         "args": {"command": "cat x.txt"}}]}
    flow_run_id = _submit(stack, plan, repo, gates={"mode": "suspend", "poll_interval_seconds": 0.5})
    suspended = wait_for_state(stack, flow_run_id, {"Suspended", *FINAL})
    assert suspended.state.name == "Suspended", suspended.state
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        resume_flow_run(flow_run_id, run_input={"decision": "approve", "approver": "ada"})
    finished = wait_for_state(stack, flow_run_id, FINAL)
    assert finished.state.name == "Completed", finished.state

    # the run's second process was forked by the warm process the first one started
    assert re.search(rf"forked \d+ for flow run {flow_run_id}", _warm_log(stack)), _warm_log(stack)
    done = stack.run("agentic", "audit", "verify", str(flow_run_id))
    assert done.returncode == 0, done.stdout + done.stderr


def test_killing_a_launcher_ends_its_forked_engine_and_the_warm_process_ends_with_its_worker(  # type: ignore[no-untyped-def]
        stack: PrefectStack, make_repo, docker_client) -> None:
    repo = make_repo({"README.md": "x\n"})
    warmed = _submit(stack, {"id": "warm-up", "goal": "start the warm process",
                             "steps": [{"id": "s", "tool": "shell", "args": {"command": "true"}}]}, repo)
    assert wait_for_state(stack, warmed, FINAL).state.name == "Completed"
    flow_run_id = _submit(stack, {"id": "warm-stopped", "goal": "a run to stop", "steps": [
        {"id": "long", "tool": "shell", "args": {"command": "sleep 30"}}]}, repo)
    running = wait_for_state(stack, flow_run_id, {"Running", *FINAL})
    assert running.state.name == "Running", running.state
    child = int(_wait("forked engine", lambda: re.search(rf"forked (\d+) for flow run {flow_run_id}",
                                                          _warm_log(stack)))[1])
    launcher = int(str(running.infrastructure_pid).rsplit(":", 1)[-1])
    assert launcher in stack.worker_processes()["warm"] and child not in stack.worker_processes()["warm"]

    os.kill(launcher, signal.SIGKILL)
    _wait("the forked engine to end", lambda: not _alive(child), timeout=60)
    # a SIGKILLed engine removes nothing: its sandbox is left for the next run of that workspace
    # to clean up; this test removes it itself
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=true"}):
        if container.labels.get(LABEL_RUN, "").startswith("warm-stopped-"):
            container.remove(force=True)

    warm_pid = int(re.search(r"\[(\d+)\] serving", _warm_log(stack))[1])
    assert _alive(warm_pid)  # still serving the worker's next runs
    stack.stop_workers()
    _wait("the warm process to end with its worker", lambda: not _alive(warm_pid), timeout=60)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
