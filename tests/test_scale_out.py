"""Scale-out on Prefect's own engine: a server on PostgreSQL, two workers on one pool.

40 flow runs of a one-step plan submitted at once all complete, both workers
take work, and the global sandbox limit is never exceeded. Then a worker is
SIGKILLed (with its flow-run processes, as when its machine dies) while it
holds running flows: the crash automation finds them, Prefect puts them back
to AwaitingRetry, and the other worker finishes them with the completed steps
from the cache (none executed twice).
"""

from __future__ import annotations

import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from conftest import ROOT, _missing
from deploy_helpers import (
    PG_ROLE,
    PrefectStack,
    free_port,
    postgres,
    postgres_database_url,
    wait_for_state,
)
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings

from prefect_agentic.blocks import SandboxSettings
from prefect_agentic.plan.loader import plan_from_data
from prefect_agentic.submit import submit_plan

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LIMIT = "agentic-scale-sandboxes"
SLOTS = 3
RUNS = 40
FINAL = {"Completed", "Failed", "Crashed", "Cancelled"}


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this module's Prefect server (dropped afterwards)."""
    database = f"agentic_scale_{secrets.token_hex(4)}"
    try:
        postgres(f"CREATE DATABASE {database}")
    except Exception:  # noqa: BLE001 - not running yet: the set-up phase installs and starts it
        subprocess.run(["bash", str(ROOT / "scripts/setup.sh"), "postgres"], check=False, capture_output=True)
        try:
            postgres(f"CREATE DATABASE {database}")
        except Exception as exc:  # noqa: BLE001
            _missing(f"PostgreSQL does not answer on 127.0.0.1:5432 as {PG_ROLE} ({exc})")
    yield postgres_database_url(database)
    postgres(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres_url, sandbox_image) -> Iterator[PrefectStack]:  # type: ignore[no-untyped-def]
    """Server on PostgreSQL, `agentic init`, run-plan deployed, two workers on agentic-process."""
    stack = PrefectStack(tmp_path_factory.mktemp("scale"), free_port(), extra_env={
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres_url,
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",  # Prefect's minimum
    })
    stack.start_server()
    try:
        for command in (("agentic", "init", "--crash-after", "90"),
                        ("prefect", "--no-prompt", "deploy", "--name", "run-plan/default")):
            done = stack.run(*command)
            assert done.returncode == 0, done.stdout + done.stderr
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            SandboxSettings(concurrency_limit=LIMIT, max_concurrent_sandboxes=SLOTS).save("scale")
        for name in ("w1", "w2"):
            stack.start_worker(name, limit=4)
        yield stack
    finally:
        stack.stop_workers()
        stack.stop_server()


class SlotWatcher:
    """Polls the global limit's active slots while the runs go on (keeps the peak), and
    which processes each worker runs (a flow run's infrastructure pid names its worker)."""

    def __init__(self, stack: PrefectStack) -> None:
        self.stack, self.peak, self.samples = stack, 0, 0
        self.pids: dict[str, set[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        with self.stack.client() as client:
            while not self._stop.is_set():
                try:
                    limit = client.read_global_concurrency_limit_by_name(LIMIT)
                except Exception:  # noqa: BLE001 - not created yet (first step creates it)
                    time.sleep(0.2)
                    continue
                self.peak, self.samples = max(self.peak, limit.active_slots), self.samples + 1
                for worker, pids in self.stack.worker_processes().items():
                    self.pids.setdefault(worker, set()).update(pids)
                time.sleep(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.peak


def _submit(stack: PrefectStack, plans: list[dict], repo: Path) -> list[UUID]:
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        sandbox = SandboxSettings.load("scale").model_dump(mode="json")
        return [submit_plan(plan_from_data(p, "test"), str(repo), parameters={"sandbox": sandbox}).id
                for p in plans]


def _wait_all(stack: PrefectStack, ids: list[UUID], timeout: float, final: set[str] = FINAL) -> list:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    return [wait_for_state(stack, i, final, timeout=max(1, deadline - time.monotonic())) for i in ids]


def _pid(flow_run) -> int:  # type: ignore[no-untyped-def]
    """The flow-run process of a process worker's run ("hostname:pid")."""
    return int(str(flow_run.infrastructure_pid).rsplit(":", 1)[-1])


def test_forty_runs_spread_over_two_workers_within_the_sandbox_limit(stack: PrefectStack, make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"f": "x"})
    plans = [{"id": f"scale-{i:02d}", "goal": "one sandboxed second",
              "steps": [{"id": "work", "tool": "shell", "args": {"command": "sleep 1"}}]} for i in range(RUNS)]
    watcher = SlotWatcher(stack)
    ids = _submit(stack, plans, repo)
    finished = _wait_all(stack, ids, timeout=420)
    peak = watcher.stop()

    assert [f.state.name for f in finished] == ["Completed"] * RUNS
    per_worker = {w: sum(1 for f in finished if _pid(f) in watcher.pids.get(w, set())) for w in ("w1", "w2")}
    assert sum(per_worker.values()) == RUNS and min(per_worker.values()) > 0, per_worker
    assert 1 <= peak <= SLOTS, (peak, watcher.samples)
    with stack.client() as client:
        assert client.read_global_concurrency_limit_by_name(LIMIT).active_slots == 0


def test_runs_of_a_killed_worker_are_crashed_retried_and_finish_from_the_cache(  # type: ignore[no-untyped-def]
        stack: PrefectStack, make_repo) -> None:
    repo = make_repo({"f": "x"})
    plans = [{"id": f"kill-{i}", "goal": "survive a dead worker", "steps": [
        {"id": "first", "tool": "shell", "writes_workspace": True, "args": {"command": "echo done > first.txt"}},
        {"id": "second", "tool": "shell", "depends_on": ["first"], "args": {"command": "sleep 25"}},
    ]} for i in range(6)]
    ids = _submit(stack, plans, repo)

    _running_second_steps(stack, ids, worker="w2", timeout=180)
    with stack.client() as client:
        started = {i: client.read_flow_run(i) for i in ids}
    doomed = set(stack.kill_worker("w2"))
    # a victim was Running when its process died (a run still starting up then ran only once)
    victims = {i for i, f in started.items()
               if f.infrastructure_pid and _pid(f) in doomed and f.state_type == StateType.RUNNING}
    assert victims
    finished = _wait_all(stack, ids, timeout=300, final=FINAL - {"Crashed"})  # Crashed is on the way back
    assert [f.state.name for f in finished] == ["Completed"] * len(ids)

    with stack.client() as client:
        for flow_run_id in ids:
            history = [s.name for s in client.read_flow_run_states(flow_run_id)]
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            executed = [t.name for t in tasks if t.state and t.state.name == "Completed"]
            # no completed step ran twice; every step has a result
            assert sorted(executed) == sorted(set(executed)), (flow_run_id, executed)
            assert {t.name for t in tasks if t.state and t.state.is_completed()} == {"first", "second"}
            if flow_run_id in victims:
                assert "Crashed" in history and "AwaitingRetry" in history, history
                assert client.read_flow_run(flow_run_id).run_count == 2
                # the first step ran once, before the kill; the retry took it from the cache
                # (a Cached task run) or reused the flow run's own completed task run
                assert [t.state.name for t in tasks if t.name == "first"].count("Completed") == 1


def _running_second_steps(stack: PrefectStack, ids: list[UUID], worker: str, timeout: float) -> None:
    """Wait until a process of ``worker`` runs the second step of a flow run."""
    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while time.monotonic() < deadline:
            mine = stack.worker_processes()[worker]
            runs = [f for f in (client.read_flow_run(i) for i in ids) if f.infrastructure_pid and _pid(f) in mine]
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[f.id for f in runs]))) if runs else []
            if any(t.name == "second" and t.state and t.state.is_running() for t in tasks):
                return
            time.sleep(0.5)
    raise TimeoutError(f"worker {worker} ran no second step within {timeout:g}s")
