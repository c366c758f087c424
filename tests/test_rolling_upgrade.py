"""A rolling worker upgrade under runs waiting at approval gates (docs/guides/upgrades.md).

Two installs of the pack, each from a wheel built from this repository: the "old" one as it is,
the "new" one from a copy whose pack version is 0.99.0 and whose `shell` tool adapter is 1.1.0
(its 1.0.0 adapter no longer registered). One real Prefect server, one process work pool, Docker.

Two deployed runs are started by a worker of the old install and suspend at their gate. The old
worker is stopped and a new one serves the pool (a rolling upgrade). The pre-upgrade check says
which run the new pack would stop; both are approved and resumed on the new worker:

- the run whose policy is `upgrade` finishes there: its completed step is not run again, the
  gated step runs with shell 1.1.0, the switch is in the audit log, and each step's records say
  which pack version ran it; `agentic audit verify` and `agentic replay` agree;
- the run whose policy is `pinned` stops before any step with a message naming the tool and both
  versions, and nothing is lost: retried with `upgrade`, it finishes without redoing its step.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from deploy_helpers import free_port, fresh_checkout
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import PrefectHTTPStatusError
from prefect.flow_runs import resume_flow_run
from prefect.input.run_input import keyset_from_paused_state
from prefect.settings import PREFECT_API_URL, temporary_settings
from test_wheel_deploy import WheelStack, _venv_with

from prefect_agentic.stack import wait_healthy

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NEW_VERSION = "0.99.0"
NEW_SHELL = "1.1.0"
PLAN = """
id: {id}
goal: Build, then ship once approved
steps:
  - {{id: build, tool: shell, writes_workspace: true, args: {{command: "echo built >> BUILD"}}}}
  - {{id: ship, tool: shell, depends_on: [build], requires_approval: true, args: {{command: "cat BUILD"}}}}
"""


def _build_wheel(source: Path, dist: Path) -> Path:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                            str(dist), str(source)], check=False, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = dist.glob("prefect_agentic-*.whl")
    return wheel


def _bump(source: Path) -> None:
    """The next release: a new pack version and a new `shell` adapter that replaces 1.0.0."""
    for path, old, new in (
        (source / "pyproject.toml", 'version = "0.1.0"', f'version = "{NEW_VERSION}"'),
        (source / "prefect_agentic" / "__init__.py", '__version__ = "0.1.0"', f'__version__ = "{NEW_VERSION}"'),
        (source / "prefect_agentic" / "tools" / "shell.py", 'version: ClassVar[str] = "1.0.0"',
         f'version: ClassVar[str] = "{NEW_SHELL}"'),
    ):
        text = path.read_text()
        assert old in text, f"{path} no longer has {old!r}: update this test's version bump"
        path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(old python, new python, new wheel): both wheels built at once, then a virtualenv for each."""
    home = tmp_path_factory.mktemp("rolling")
    old_src, new_src = fresh_checkout(home / "old-src"), fresh_checkout(home / "new-src")
    _bump(new_src)
    with ThreadPoolExecutor(2) as pool:
        old_wheel, new_wheel = pool.map(lambda s: _build_wheel(s[0], s[1]),
                                        [(old_src, home / "old-dist"), (new_src, home / "new-dist")])
    assert new_wheel.name.startswith(f"prefect_agentic-{NEW_VERSION}-")
    return _venv_with(old_wheel, home / "old-venv"), _venv_with(new_wheel, home / "new-venv"), new_wheel


@pytest.fixture
def stacks(installs: tuple[Path, Path, Path], tmp_path: Path, sandbox_image: str) -> Iterator[tuple[WheelStack, WheelStack]]:
    """One server (old install) and the environment both installs' commands and workers share."""
    old_python, new_python, _ = installs
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "PYTHONPATH"))}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect"), "AGENTIC_HOME": str(tmp_path / "agentic"),
                "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "1"})
    old = WheelStack(tmp_path, old_python, {**env, "PATH": f"{old_python.parent}{os.pathsep}{env['PATH']}"})
    new = WheelStack(tmp_path, new_python, {**env, "PATH": f"{new_python.parent}{os.pathsep}{env['PATH']}"})
    try:
        server = old.start("server", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        wait_healthy(env["PREFECT_API_URL"], server, tmp_path / "server.log", 120)
        init = old.run("agentic", "init", cwd=tmp_path)
        assert init.returncode == 0, init.stdout + init.stderr
        yield old, new
    finally:
        new.stop()
        old.stop()


def test_a_suspended_run_started_on_the_old_pack_finishes_on_the_new_one(  # type: ignore[no-untyped-def]
        stacks: tuple[WheelStack, WheelStack], installs: tuple[Path, Path, Path], make_repo,
        tmp_path: Path, sandbox_image: str) -> None:
    old, new = stacks
    project = tmp_path / "project"
    old.deploy_team_project(project)
    repo = make_repo({"README.md": "app\n"})
    runs = {}
    for policy in ("upgrade", "pinned"):
        (project / f"{policy}.yaml").write_text(PLAN.format(id=f"rolling-{policy}"))
        submitted = old.run("agentic", "submit", f"{policy}.yaml", "--repo", str(repo), "--deployment",
                            "run-plan/team", "--sandbox-block", "default", "--on-upgrade", policy, cwd=project)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        runs[policy] = UUID(re.search(r"\(([0-9a-f-]{36})\)", submitted.stdout).group(1))  # type: ignore[union-attr]

    old_worker = old.start("old-worker", "prefect", "worker", "start", "--pool", "agentic-process", "--type",
                           "process", "--name", "old-worker")
    for run_id in runs.values():
        assert _waiting_for_an_answer(old, run_id).state.state_details.pause_key.startswith("approve-ship-")
    old.processes.remove(old_worker)  # the rolling upgrade: the old worker goes, a new one serves the pool
    _stop(old_worker)
    new.start("new-worker", "prefect", "worker", "start", "--pool", "agentic-process", "--type", "process",
              "--name", "new-worker")

    # before approving: the pre-upgrade check, by the new install and by the old one against the new wheel
    for checker, extra in ((new, ()), (old, ("--tools-from", str(installs[2])))):
        check = checker.run("agentic", "upgrade-check", *extra, cwd=tmp_path)
        said = check.stdout
        assert check.returncode == 1, said + check.stderr
        assert f"target: prefect-agentic {NEW_VERSION}" in said
        assert f"{runs['upgrade']}  rolling-upgrade v1: Build, then ship once approved  [Suspended]  policy " \
               "upgrade: SWITCHES" in said
        assert f"{runs['pinned']}  rolling-pinned v1: Build, then ship once approved  [Suspended]  policy " \
               "pinned: STOPS" in said
        assert said.count(f"- tool 'shell': pinned 1.0.0, installed {NEW_SHELL}") == 2
        assert "2 in-flight run(s); 1 would stop under their upgrade policy" in said

    with temporary_settings({PREFECT_API_URL: old.env["PREFECT_API_URL"]}):
        for run_id in runs.values():
            resume_flow_run(run_id, run_input={"decision": "approve", "approver": "ada"})
    finished = _wait(new, runs["upgrade"], {"Completed", "Failed", "Crashed"})
    assert finished.state.name == "Completed", _worker_log(tmp_path)
    stopped = _wait(new, runs["pinned"], {"Completed", "Failed", "Crashed"})
    assert stopped.state.name == "Failed", _worker_log(tmp_path)
    assert f"tool 'shell': pinned 1.0.0, installed {NEW_SHELL}" in stopped.state.message
    assert "upgrade policy 'pinned'" in stopped.state.message

    upgraded = _records(tmp_path, runs["upgrade"])
    assert _step_runs(upgraded) == [("build", "0.1.0", "1.0.0"), ("ship", NEW_VERSION, NEW_SHELL)]
    started = upgraded[0]["data"]
    assert started["pins"]["pack"] == "0.1.0" and started["pins"]["tools"] == {"shell": "1.0.0"}
    assert started["pins"]["image_id"].startswith("sha256:")
    [resumed] = [r["data"] for r in upgraded if r["kind"] == "run_resumed"]
    assert resumed["prefect_agentic"] == NEW_VERSION and resumed["image_id"] == started["pins"]["image_id"]
    [switch] = [r["data"] for r in upgraded if r["kind"] == "version_switch"]
    assert (switch["outcome"], switch["switches"]) == ("switched", [
        {"kind": "tool", "name": "shell", "pinned": "1.0.0", "installed": NEW_SHELL}])
    assert _finished_steps(upgraded) == [("build", "completed"), ("build", "cached"), ("ship", "completed")]
    for command in (("audit", "verify"), ("replay",)):
        checked = new.run("agentic", *command, str(runs["upgrade"]), cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    pinned = _records(tmp_path, runs["pinned"])
    [refusal] = [r["data"] for r in pinned if r["kind"] == "version_switch"]
    assert refusal["outcome"] == "stopped" and pinned[-1]["data"]["status"] == "stopped"
    # nothing lost: the same flow run, retried with the `upgrade` policy, finishes without redoing `build`
    retried = new.run("agentic", "retry", str(runs["pinned"])[:8], "--on-upgrade", "upgrade", cwd=tmp_path)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "is scheduled again (AwaitingRetry), upgrade policy upgrade" in retried.stdout
    assert _wait(new, runs["pinned"], {"Completed", "Failed", "Crashed"}).state.name == "Completed", \
        _worker_log(tmp_path)
    pinned = _records(tmp_path, runs["pinned"])
    assert _step_runs(pinned) == [("build", "0.1.0", "1.0.0"), ("ship", NEW_VERSION, NEW_SHELL)]
    verified = new.run("agentic", "audit", "verify", str(runs["pinned"]), cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _wait(stack: WheelStack, run_id: UUID, names: set[str], timeout: float = 150) -> FlowRun:
    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while True:
            flow_run = client.read_flow_run(run_id)
            if flow_run.state and flow_run.state.name in names:
                return flow_run
            assert time.monotonic() < deadline, f"{run_id} never reached {names}: {flow_run.state}"
            time.sleep(0.5)


def _waiting_for_an_answer(stack: WheelStack, run_id: UUID, timeout: float = 150) -> FlowRun:
    """The run once it is Suspended at its gate with its answer form saved.

    Prefect's ``suspend_flow_run`` sets the Suspended state first and saves the form's schema
    after it: a worker stopped in between can end the flow-run process with a run nobody can
    answer ("Run input schema not found"), so the upgrade starts only once the form is there.
    """
    flow_run = _wait(stack, run_id, {"Suspended"}, timeout)
    schema_key = keyset_from_paused_state(flow_run.state)["schema"]  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while True:
            try:
                client.read_flow_run_input(run_id, schema_key)
                return flow_run
            except PrefectHTTPStatusError as exc:
                assert exc.response.status_code == 404, exc
                assert time.monotonic() < deadline, f"{run_id} is Suspended but its answer form was never saved"
                time.sleep(0.5)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a worker as a service manager does: SIGTERM, then SIGKILL if it has not gone after a grace period.

    Prefect's worker turns SIGTERM into a graceful shutdown whose length depends on
    the machine (on a loaded CI machine it took over a minute once); the upgrade
    under test does not depend on how the old worker went.
    """
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)


def _records(home: Path, run_id: UUID) -> list[dict[str, Any]]:
    log = home / "agentic" / "audit" / "runs" / f"{run_id}.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def _step_runs(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(step, pack version, tool version) of every attempt that ran: which version ran which step."""
    return [(r["step"], r["data"]["pack"], r["data"]["tool_version"]) for r in records
            if r["kind"] == "attempt_started"]


def _finished_steps(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["step"], r["data"]["status"]) for r in records if r["kind"] == "step_finished"]


def _worker_log(home: Path) -> str:
    return "".join(p.read_text(errors="replace")[-3000:] for p in home.glob("*worker.log"))
