"""A real Prefect stack for the deployment tests: a fresh checkout, a server, workers.

Everything runs as a user would run it: `agentic up` / `agentic init` /
`prefect deploy --all` / `prefect worker start` / `agentic submit` as
subprocesses with their own PREFECT_HOME and AGENTIC_HOME.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from prefect_agentic.stack import wait_healthy

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def fresh_checkout(dest: Path) -> Path:
    """This repository's files as a fresh clone has them (tracked and new files, nothing ignored)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = ROOT / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectStack:
    """A Prefect server at ``api_url`` with the environment its clients and workers use."""

    def __init__(self, home: Path, port: int, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = port
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.checkout = fresh_checkout(home / "checkout")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")},
            "PREFECT_HOME": str(home / "prefect"), "AGENTIC_HOME": str(home / "agentic"),
            "PREFECT_API_URL": self.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "INFO",
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            **(extra_env or {}),
        }
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def run(self, *command: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a command (``agentic …``, ``prefect …``) in the stack's environment."""
        return subprocess.run([str(BIN / command[0]), *command[1:]], check=False, cwd=cwd or self.checkout,
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def start_server(self, timeout: float = 120) -> None:
        """`prefect server start` on this stack's port (its database from the environment)."""
        log = (self.home / "server.log").open("ab")
        self.server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                        "--port", str(self.port)], env=self.env, cwd=self.home, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        wait_healthy(self.api_url, self.server, self.home / "server.log", timeout)

    def stop_server(self) -> None:
        os.killpg(self.server.pid, signal.SIGTERM)
        try:
            self.server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()

    def start_worker(self, name: str, pool: str = "agentic-process", limit: int | None = None,
                     warm: bool = False) -> None:
        """`prefect worker start`, or with ``warm`` `agentic worker` (flow runs forked warm)."""
        command = ([str(BIN / "agentic"), "worker", "--pool", pool, "--name", name] if warm else
                   [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--name", name])
        if limit:
            command += ["--limit", str(limit)]
        log = (self.home / f"worker-{name}.log").open("ab")
        self.workers[name] = subprocess.Popen(command, env=self.env, cwd=self.home, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL the worker and every process under it, as when its machine dies.

        The process worker starts flow runs in sessions of their own, so its
        process group alone would leave them running.
        """
        process = self.workers.pop(name)
        doomed = [process.pid, *_descendants(process.pid)]
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
        return doomed

    def stop_workers(self) -> None:
        for name in list(self.workers):
            process = self.workers.pop(name)
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass

    def worker_processes(self) -> dict[str, set[int]]:
        """Worker name → the pids of the processes it runs now (its flow runs)."""
        return {name: set(_descendants(process.pid)) for name, process in self.workers.items()}

    def worker_log(self, name: str) -> str:
        return (self.home / f"worker-{name}.log").read_text(errors="replace")

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        with temporary_settings({PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
            yield client


PG_ROLE = PG_PASSWORD = "prefect_agentic"  # made by scripts/setup.sh postgres


def postgres(sql: str) -> None:
    """Run one SQL statement as the set-up's PostgreSQL role (on 127.0.0.1:5432)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(user=PG_ROLE, password=PG_PASSWORD, host="127.0.0.1", database="postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def postgres_database_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_ROLE}:{PG_PASSWORD}@127.0.0.1:5432/{database}"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_for_state(stack: PrefectStack, flow_run_id: UUID, names: set[str], timeout: float = 180) -> Any:
    """The flow run once its state is one of ``names`` (e.g. {"Paused"}, {"Completed", "Failed"})."""
    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while time.monotonic() < deadline:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state and flow_run.state.name in names:
                return flow_run
            time.sleep(0.5)
    raise TimeoutError(f"flow run {flow_run_id} not in {names} within {timeout:g}s "
                       f"(last: {flow_run.state.name if flow_run.state else None})")
