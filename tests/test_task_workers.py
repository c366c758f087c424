"""Steps on any worker: two task workers that share no disk but the snapshot remote; one dies mid-step.

A real `prefect server start`, two `agentic task-worker`s with their own
AGENTIC_HOME and PREFECT_HOME, and `agentic run --steps-on task-workers`.
Prefect's result storage (step parameters and results) is the one shared
directory besides the remote, as a storage block would be in production.
The worker running the sleeping step is SIGKILLed once the step is seen
running in its own workspace; the other worker redoes it, the run ends on
the snapshot a local run ends on, and no step completes twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from deploy_helpers import BIN, free_port
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    LogFilter,
    LogFilterTextSearch,
    TaskRunFilter,
    TaskRunFilterName,
)
from prefect.settings import PREFECT_API_URL, temporary_settings

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.sandbox.runner import LABEL_MANAGED, LABEL_RUN
from prefect_agentic.snapshot_remote import SnapshotRemote
from prefect_agentic.stack import wait_healthy
from prefect_agentic.workspace import mounted, resolve_base, run_key, size_image

pytestmark = [pytest.mark.docker]

PLAN = """\
id: moving
version: 1
goal: Steps that run on whichever task worker takes them
steps:
  - {id: s1, tool: shell, args: {command: "echo 1 >> log.txt"}, writes_workspace: true}
  - id: s2
    tool: shell
    args: {command: "touch .agentic/s2-started; sleep 4; echo 2 >> log.txt"}
    writes_workspace: true
    depends_on: [s1]
  - {id: s3, tool: shell, args: {command: "echo 3 >> log.txt"}, writes_workspace: true, depends_on: [s2]}
  - {id: s4, tool: shell, args: {command: "cat log.txt"}, depends_on: [s3]}
"""
STEPS = ["s1", "s2", "s3", "s4"]


class Machines:
    """A Prefect server and the environments of the flow's and the workers' machines."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.remote = root / "snapshots.git"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AGENTIC_"))}
        self.base = {**base, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                     "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "INFO",
                     "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "result-storage")}

    def env(self, machine: str) -> dict[str, str]:
        (self.root / machine / "prefect").mkdir(parents=True, exist_ok=True)
        env = {**self.base, "PREFECT_HOME": str(self.root / machine / "prefect"),
               "AGENTIC_HOME": str(self.root / machine / "agentic")}
        if machine != "server":
            env["PREFECT_API_URL"] = self.api_url
        return env

    def start(self, name: str, *command: str, machine: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        process = subprocess.Popen(command, env=self.env(machine), cwd=self.root, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


    def workers_up(self) -> None:
        """Start each task worker that is not running (a test before may have killed one)."""
        for name in ("w1", "w2"):
            if name not in self.processes or self.processes[name].poll() is not None:
                self.start(name, str(BIN / "agentic"), "task-worker", machine=name)


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str, docker_client) -> Iterator[Machines]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("machines")
    machines = Machines(root)
    server = machines.start("server", str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                            "--port", str(machines.port), machine="server")
    try:
        wait_healthy(machines.api_url, server, root / "server.log", 120)
        yield machines
    finally:
        machines.stop()
        # a killed worker's sandbox container outlives it (the engine is the machine's): removed here
        for container in docker_client.containers.list(all=True, filters={"label": [f"{LABEL_MANAGED}=true"]}):
            if container.labels.get(LABEL_RUN, "").startswith("moving-"):
                container.remove(force=True)


def _run(machines: Machines, repo: Path, machine: str, *extra: str, remote: bool = True) -> subprocess.Popen[str]:
    env = machines.env(machine)
    if remote:
        env["AGENTIC_SNAPSHOT_REMOTE"] = str(machines.remote)
    return subprocess.Popen([str(BIN / "agentic"), "run", str(machines.root / "plan.yaml"), "--repo", str(repo),
                             "--json", *extra], env=env, cwd=machines.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _report(process: subprocess.Popen[str], timeout: float = 300) -> dict:  # type: ignore[type-arg]
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, out + err
    return json.loads(out)


def _workspace(machines: Machines, worker: str, key: str) -> Path:
    return machines.root / worker / "agentic" / "workspaces" / key


def _marker(machines: Machines, worker: str, key: str, name: str) -> Path:
    return _workspace(machines, worker, key) / ".agentic" / name


def _started_on(machines: Machines, key: str, step: str = "s2", timeout: float = 240) -> str:
    """The worker whose own workspace shows ``step`` running (its marker), waited for without a clock race."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in ("w1", "w2"):
            if _marker(machines, name, key, f"{step}-started").exists():
                return name
        time.sleep(0.1)
    raise TimeoutError(f"step {step} never started on a task worker")


def _states(machines: Machines, since: datetime) -> dict[str, list[str]]:
    """Step name → the states of its task runs created since ``since``, oldest first."""
    with temporary_settings({PREFECT_API_URL: machines.api_url}), get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=STEPS)))
    states: dict[str, list[str]] = {}
    for task_run in sorted(runs, key=lambda r: r.created or since):
        if task_run.created and task_run.created >= since:
            states.setdefault(task_run.name, []).append(task_run.state.name if task_run.state else "")
    return states


def _wait_for_log(machines: Machines, word: str, text: str, timeout: float = 120) -> None:
    """Wait until a flow run logged ``text`` (found by ``word``: the API's text search matches any word)."""
    deadline = time.monotonic() + timeout
    with temporary_settings({PREFECT_API_URL: machines.api_url}), get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            found = client.read_logs(log_filter=LogFilter(text=LogFilterTextSearch(query=word)), limit=50)
            if any(text in log.message for log in found):
                return
            time.sleep(0.3)
    raise TimeoutError(f"no flow run logged {text!r}")


def test_a_step_whose_worker_dies_is_redone_by_the_other(machines: Machines, make_repo) -> None:  # type: ignore[no-untyped-def]
    machines.workers_up()
    since = datetime.now(timezone.utc)
    repo = make_repo({"README.md": "hello\n"})
    (machines.root / "plan.yaml").write_text(PLAN)
    key = run_key("moving", repo, resolve_base(repo, "HEAD"))

    run = _run(machines, repo, "flow", "--steps-on", "task-workers")
    doomed = _started_on(machines, key)
    victim = machines.processes[doomed]
    os.killpg(victim.pid, signal.SIGKILL)  # the machine dies: the worker and the step it runs
    victim.wait()
    report = _report(run)
    survivor = "w2" if doomed == "w1" else "w1"

    assert [s["status"] for s in report["steps"]] == ["completed"] * 4
    # the step was redone on the survivor, from the snapshot it fetched from the remote
    with mounted(_workspace(machines, survivor, key)):  # a worker mounts its workspace for a step only
        assert _marker(machines, survivor, key, "s2-started").exists()
    assert SnapshotRemote(machines.remote).has(report["final_snapshot"])
    # no step completed twice: s2's first task run crashed with its worker, every other one ran once
    states = _states(machines, since)
    assert states == {"s1": ["Completed"], "s2": ["Crashed", "Completed"], "s3": ["Completed"],
                      "s4": ["Completed"]}, states
    # the same final snapshot as a local run of the same plan (no remote, no task worker)
    local = _report(_run(machines, repo, "local", remote=False))
    assert report["final_snapshot"] == local["final_snapshot"]


# The first step waits for a gate: the restarted flow run reaches it without any worker's help (a busy
# Prefect task worker takes one more task run than its limit and holds it until it has a free slot).
GATED = PLAN.replace('args: {command: "echo 1 >> log.txt"}',
                     'args: {command: "touch .agentic/s1-started; while [ ! -e .agentic/go ]; do sleep 0.2; done; '
                     'echo 1 >> log.txt"}')


def test_a_run_whose_machine_dies_resumes_on_another_without_redoing_a_step(machines: Machines, make_repo) -> None:  # type: ignore[no-untyped-def]
    """The flow run's machine dies while a worker runs s1; the run started again elsewhere waits for that s1."""
    machines.workers_up()
    since = datetime.now(timezone.utc)
    repo = make_repo({"README.md": "moved\n"})
    (machines.root / "plan.yaml").write_text(GATED)
    key = run_key("moving", repo, resolve_base(repo, "HEAD"))

    first = _run(machines, repo, "flow-a", "--steps-on", "task-workers")
    worker = _started_on(machines, key, "s1")
    first.kill()  # SIGKILL: the flow run's machine dies; the step goes on on its worker
    first.communicate()
    second = _run(machines, repo, "flow-b", "--steps-on", "task-workers")
    try:  # it finds the s1 that still runs instead of submitting another
        _wait_for_log(machines, "adopting", "Step 's1' still runs in task run", timeout=240)
    except TimeoutError:
        second.kill()
        raise AssertionError("the second flow run did not adopt s1:\n" + second.communicate()[1][-6000:]) from None
    _marker(machines, worker, key, "go").write_text("")  # now s1 may finish
    report = _report(second)

    assert [s["status"] for s in report["steps"]] == ["completed"] * 4
    assert _states(machines, since) == {"s1": ["Completed"], "s2": ["Completed"],
                                        "s3": ["Completed"], "s4": ["Completed"]}
    (machines.root / "plan.yaml").write_text(PLAN)
    local = _report(_run(machines, repo, "local", remote=False))
    assert report["final_snapshot"] == local["final_snapshot"]


FILL = """\
id: filling
goal: A step on a task worker writes past the run's workspace size limit
steps:
  - {id: fill, tool: shell, args: {command: "head -c 200M /dev/zero > big; echo done"}, writes_workspace: true}
"""


def test_a_step_on_a_task_worker_is_held_to_the_runs_workspace_size_limit(machines: Machines, make_repo) -> None:  # type: ignore[no-untyped-def]
    machines.workers_up()
    repo = make_repo({"README.md": "filling\n"})
    (machines.root / "plan.yaml").write_text(FILL)
    with temporary_settings({PREFECT_API_URL: machines.api_url}):
        SandboxSettings(workspace_size="64m").save("small-workspace", overwrite=True)
    run = _run(machines, repo, "flow", "--steps-on", "task-workers", "--sandbox-block", "small-workspace")
    out, err = run.communicate(timeout=300)
    assert run.returncode == 1, out + err  # the step failed, the run ran
    [fill] = json.loads(out)["steps"]
    assert fill["status"] == "failed"
    assert "step 'fill' filled the workspace: its size limit (64m) was reached" in fill["reason"], fill["reason"]
    key = run_key("filling", repo, resolve_base(repo, "HEAD"))
    images = [size_image(_workspace(machines, worker, key)) for worker in ("w1", "w2")]
    assert any(image.exists() for image in images)  # the worker that ran it had the limit, on its own disk
    for image in filter(Path.exists, images):
        assert image.stat().st_blocks * 512 <= 64 * 1024 * 1024  # and held no more than the limit
    for worker in ("w1", "w2"):  # each gave its mount back once the step ended
        assert not os.path.ismount(_workspace(machines, worker, key))
