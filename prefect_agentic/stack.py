"""The local stack: a Prefect server and a worker for the local work pool on this machine.

For teams trying prefect-agentic on one machine: ``agentic up`` starts both as
background processes (their logs and pids under ``$AGENTIC_HOME/stack``) and
``agentic down`` stops them. Anything bigger runs the server and workers as
services of their own (README, "Running at scale").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from prefect_agentic.errors import StackError
from prefect_agentic.settings import agentic_home
from prefect_agentic.work_pools import PROCESS_POOL


@dataclass
class Stack:
    api_url: str
    ui_url: str
    pool: str
    server_pid: int
    worker_pid: int


WORKER_QUERY_SECONDS = "1"
"""How often the local worker asks for runs to start (Prefect's default is 10 s). An approved
suspended run is started again by a worker: this poll is most of the wait after the click."""


def worker_settings() -> dict[str, str]:
    """The Prefect settings of the worker ``agentic up`` starts (the environment's own win)."""
    return {"PREFECT_WORKER_QUERY_SECONDS": os.environ.get("PREFECT_WORKER_QUERY_SECONDS",
                                                          WORKER_QUERY_SECONDS)}


def stack_dir() -> Path:
    return agentic_home() / "stack"


def running_stack() -> Stack | None:
    """The stack ``agentic up`` started, if its server still runs."""
    state = stack_dir() / "stack.json"
    if not state.exists():
        return None
    stack = Stack(**json.loads(state.read_text()))
    return stack if _alive(stack.server_pid) else None


def start_stack(host: str = "127.0.0.1", port: int = 4200, pool: str = PROCESS_POOL,
                timeout: float = 90) -> Stack:
    """Start a server on ``host:port`` and a process worker on ``pool``; wait until the API answers."""
    found = running_stack()
    if found is not None:
        return found
    home = stack_dir()
    home.mkdir(parents=True, exist_ok=True)
    api_url = f"http://{host}:{port}/api"
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = _spawn([sys.executable, "-m", "prefect", "server", "start", "--host", host,
                     "--port", str(port)], home / "server.log", env)
    try:
        wait_healthy(api_url, server, home / "server.log", timeout)
    except StackError:
        _stop(server.pid)
        raise
    worker = _spawn([sys.executable, "-m", "prefect_agentic.cli.main", "worker", "--pool", pool,
                     "--name", f"agentic-local-{pool}"], home / "worker.log",
                    {**env, **worker_settings()})
    stack = Stack(api_url=api_url, ui_url=f"http://{host}:{port}", pool=pool,
                  server_pid=server.pid, worker_pid=worker.pid)
    (home / "stack.json").write_text(json.dumps(asdict(stack)))
    return stack


def stop_stack(timeout: float = 30) -> Stack | None:
    """Stop the worker, then the server, of the stack ``agentic up`` started (None: none ran)."""
    state = stack_dir() / "stack.json"
    if not state.exists():
        return None
    stack = Stack(**json.loads(state.read_text()))
    for pid in (stack.worker_pid, stack.server_pid):
        _stop(pid, timeout)
    state.unlink()
    return stack


def _spawn(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)


def wait_healthy(api_url: str, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait until the server started as ``server`` answers at ``api_url``; StackError if it dies or stays mute."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise StackError(f"the Prefect server exited with {server.returncode}; see {log}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise StackError(f"the Prefect server did not answer at {api_url} within {timeout:g}s; see {log}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(pid: int, timeout: float = 30) -> None:
    """SIGTERM the process group of ``pid`` (the worker's flow runs too), SIGKILL after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:  # not our child (started by an earlier `agentic up`)
                if not _alive(pid):
                    return
            time.sleep(0.2)
