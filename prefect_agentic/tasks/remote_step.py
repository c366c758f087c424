"""Steps on any worker: a plan step as a Prefect background task served by task workers.

With ``steps_on="task-workers"`` the flow run does not execute its steps: it
submits each one with ``Task.apply_async`` and Prefect's server hands it to
one of the task workers serving ``run_step_on_worker`` (``agentic
task-worker``). The worker keeps nothing the run needs afterwards: it fetches
the step's input snapshot from the snapshot remote into its own workspace
(under its own ``AGENTIC_HOME``), runs the step in its own sandbox, pushes the
output snapshot, and returns the ``StepResult`` through Prefect's result
storage. The cache key is ``step_cache_key`` with the remote's epoch in place
of a workspace's, so a step done once by any worker is a cache hit for all.

A task worker that dies mid-step leaves its task run ``Running`` forever:
Prefect's server re-queues a background task run only when handing it to a
worker fails, not when the worker dies later. So the worker claims the step
while it runs it: a Prefect variable named by the step's cache key holds the
worker's Prefect task-worker id and the task run's. The flow watches: once
that worker has left the server's list of connected task workers, the task
run is set ``Crashed`` and the step submitted again, with the same parameters
and so the same cache key. A flow run retried after a crash (on any machine)
finds the claim of a step its predecessor submitted and waits for that task
run instead of running the step a second time.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate
from prefect.context import TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger
from prefect.states import Crashed, State

from prefect_agentic.errors import StepFailed
from prefect_agentic.executor import (
    RunContext,
    StepResult,
    close_run_resources,
    execute_step,
    run_resources,
)
from prefect_agentic.plan.models import Step
from prefect_agentic.record.progress import StepEvent, StepStatus, publish
from prefect_agentic.snapshot_remote import SnapshotRemote, run_ref
from prefect_agentic.tasks.step import input_snapshot_of, step_cache_key
from prefect_agentic.workspace import Workspace, run_workspace, unmounted_at_end, workspace_lock

WATCH_INTERVAL_S = 1.0
API_ATTEMPTS = 8
"""Calls to the API that a busy server refuses (5xx, 429, a dropped connection) are tried this often."""
ABSENT_POLLS = 3
"""Polls in a row a worker must be missing from the server's list before its step is taken from it
(the server forgets a worker for an instant each time it hands it a task run)."""

logger = get_logger("prefect_agentic.task_workers")
T = TypeVar("T")


def worker_id() -> str:
    """This process's task-worker id, as Prefect's ``TaskWorker.client_id`` names it to the server."""
    return f"{socket.gethostname()}-{os.getpid()}"


@task(persist_result=True, result_serializer="json", cache_key_fn=step_cache_key)
def run_step_on_worker(step: Step, run: RunContext, input_result: StepResult | None = None,
                       attempt: int = 1) -> StepResult:
    """Run one step on this task worker, from and to the snapshot remote.

    The worker's workspace of the run has the run's size limit (``run.sandbox.workspace_size``).
    ``attempt`` counts the flow's submissions of the step after a retryable
    failure (Prefect's own retries belong to the task run, which lives here).
    """
    if run.snapshot_remote is None:
        raise ValueError("run_step_on_worker needs a run with a snapshot remote")
    remote = SnapshotRemote.parse(run.snapshot_remote)
    path = run_workspace(run.run_key)
    here = run.model_copy(update={"workspace": path, "sandbox_key": f"{run.run_key}.{os.getpid()}"})
    snapshot = input_snapshot_of(run, input_result)
    claim = step_claim_name(step, run, input_result)
    owner = _claim(claim)
    try:
        # The run's size limit holds here too (WorkspaceSizeLimitError where it cannot). The worker never
        # learns when the run ends, so its workspace is mounted for each step only: no mount (and loop
        # device) stays behind for every run it ever served.
        with _run_lock(run.run_key), workspace_lock(path), unmounted_at_end(path, _flow_run_logger()):
            try:
                workspace = Workspace.prepare(remote.path, run.base_snapshot, path, size=run.sandbox.workspace_size)
                if not workspace.has_commit(snapshot):
                    remote.fetch(path, snapshot)
                publish(StepEvent(run_key=run.run_key, step_id=step.id, status=StepStatus.RUNNING, attempt=attempt))
                try:
                    result = execute_step(step, here, snapshot, attempt)
                except StepFailed as exc:
                    if exc.attempt_snapshot:  # the flow shows what the failed attempt left
                        remote.push(path, exc.attempt_snapshot, run_ref(run.run_key, f"{step.id}.failed"))
                    raise
                if result.snapshot != snapshot:
                    remote.push(path, result.snapshot, run_ref(run.run_key, step.id))
                return result
            finally:  # the step's containers go before its workspace is unmounted
                close_run_resources(run.run_key)
    finally:
        _release(claim, owner)


_run_locks: dict[str, threading.Lock] = {}
_run_locks_guard = threading.Lock()


def _run_lock(run_key: str) -> threading.Lock:
    """One step of a run at a time in this worker (its steps share the worker's workspace of the run);
    steps of other runs go on in parallel up to the worker's ``--limit``."""
    with _run_locks_guard:
        return _run_locks.setdefault(run_key, threading.Lock())


def step_claim_name(step: Step, run: RunContext, input_result: StepResult | None) -> str:
    """The Prefect variable naming the worker that runs this step now: the step's cache key.

    Named by the cache key rather than the task run, so that a flow run retried
    after a crash (on any machine) finds the step its predecessor submitted and
    still runs, and waits for it instead of running it a second time.
    """
    return step_cache_key(None, {"step": step, "run": run, "input_result": input_result})


def _claim(name: str) -> str | None:
    """Name this worker (and its task run) as the one running the step now."""
    context = TaskRunContext.get()
    if context is None:
        return None
    value = {"worker": worker_id(), "task_run": str(context.task_run.id)}
    with get_client(sync_client=True) as client:
        if client.read_variable_by_name(name) is not None:  # a claim its dead worker left
            client.delete_variable_by_name(name)
        client.create_variable(VariableCreate(name=name, value=value))
    return str(context.task_run.id)


def _release(name: str, task_run_id: str | None) -> None:
    """Remove the claim, unless another task run of the step claimed it since."""
    if task_run_id is None:
        return
    with get_client(sync_client=True) as client:
        if _claim_of(client, name, task_run_id) is not None:
            client.delete_variable_by_name(name)


def _claim_of(client: Any, name: str, task_run_id: str) -> str | None:
    """The worker that claimed the step for ``task_run_id``, or None (no claim, or another run's)."""
    found = client.read_variable_by_name(name)
    value = found.value if found is not None else None
    if isinstance(value, dict) and value.get("task_run") == task_run_id:
        return str(value.get("worker"))
    return None


def _patient(call: Callable[[], T]) -> T:
    """``call()``, again after a pause when a busy server refuses it (a 503 from SQLite under load)."""
    for attempt in range(1, API_ATTEMPTS + 1):
        try:
            return call()
        except (httpx.HTTPStatusError, httpx.TransportError) as exc:
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
            if attempt == API_ATTEMPTS or (status is not None and status < 500 and status != 429):
                raise
            time.sleep(min(2.0 ** attempt, 15.0))
    raise AssertionError("unreachable")


def _flow_run_logger() -> Any:
    """The flow run's logger (its lines reach the flow run's logs in the UI), else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def connected_task_workers(client: Any, task_key: str) -> set[str]:
    """The ids of the task workers connected to the server now that serve ``task_key``."""
    response = client.request("POST", "/task_workers/filter",
                              json={"task_worker_filter": {"task_keys": [task_key]}})
    response.raise_for_status()
    return {str(worker["identifier"]) for worker in response.json()}


class TaskWorkerStep:
    """The flow's side of one step on the task workers: submit, watch, re-submit; future-like.

    ``wait()``, ``state`` and ``add_done_callback`` are what the scheduler uses of a
    ``PrefectFuture``. The final state is the step's last task run's.
    """

    def __init__(self, step: Step, run: RunContext, input_result: StepResult | None) -> None:
        self.step, self.run, self.input_result = step, run, input_result
        self.task_run_ids: list[UUID] = []
        self.taken_from: list[str] = []
        self._state: State[Any] | None = None
        self._done = threading.Event()
        self._callbacks: list[Callable[[TaskWorkerStep], None]] = []
        self._lock = threading.Lock()
        self.logger = _flow_run_logger()
        threading.Thread(target=self._drive, name=f"step-{step.id}", daemon=True).start()

    @property
    def state(self) -> State[Any]:
        self.wait()
        assert self._state is not None
        return self._state

    def wait(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def add_done_callback(self, fn: Callable[[TaskWorkerStep], None]) -> None:
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    def _drive(self) -> None:
        try:
            self._state = self._run_attempts()
        except BaseException as exc:  # noqa: BLE001 - any failure to dispatch ends the step, never the thread silently
            self._state = Crashed(message=f"step '{self.step.id}' could not be run on the task workers: {exc}")
        with self._lock:
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    def _run_attempts(self) -> State[Any]:
        attempt = 1
        task = run_step_on_worker.with_options(name=self.step.id, task_run_name=self.step.id)
        claim = step_claim_name(self.step, self.run, self.input_result)
        adopted = self._running_elsewhere(claim)
        if adopted is not None:  # an earlier flow run's submission of this step still runs: wait for it
            self.logger.info("Step '%s' still runs in task run %s, submitted by an earlier flow run of this "
                             "run: adopting it (waiting for it instead of running the step again)",
                             self.step.id, adopted)
            state = self._watch(adopted, run_step_on_worker.task_key, claim)
            if state is not None and state.is_completed():
                self._fetch(state.result().snapshot)
                return state
        while True:
            kwargs = {"step": self.step, "run": self.run, "input_result": self.input_result, "attempt": attempt}
            future = _patient(partial(task.apply_async, kwargs=kwargs))
            self.task_run_ids.append(future.task_run_id)
            state = self._watch(future.task_run_id, run_step_on_worker.task_key, claim)
            if state is None:  # its worker died: the same step again, same cache key
                continue
            if state.is_completed():
                self._fetch(state.result().snapshot)
                return state
            error = state.result(raise_on_failure=False)
            if getattr(error, "retryable", False) and attempt <= self.step.retries:
                attempt += 1
                time.sleep(self.step.retry_backoff_seconds * 2 ** (attempt - 2))
                continue
            snapshot = getattr(error, "attempt_snapshot", None)
            if snapshot:
                self._fetch(snapshot)
            return state

    def _running_elsewhere(self, claim: str) -> UUID | None:
        """The task run a worker runs this step in now (claimed, not final), if any."""
        with get_client(sync_client=True) as client:
            found = client.read_variable_by_name(claim)
            value = found.value if found is not None else None
            if not isinstance(value, dict) or not value.get("task_run"):
                return None
            task_run_id = UUID(str(value["task_run"]))
            state = client.read_task_run(task_run_id).state
            return None if state is None or state.is_final() else task_run_id

    def _watch(self, task_run_id: UUID, task_key: str, claim: str) -> State[Any] | None:
        """The task run's final state, or None once the worker running it is gone (the run is then Crashed)."""
        absent = 0
        with get_client(sync_client=True) as client:
            while True:
                state = _patient(lambda: client.read_task_run(task_run_id)).state
                if state is not None and state.is_final():
                    return state
                owner = _patient(lambda: _claim_of(client, claim, str(task_run_id)))
                if state is not None and state.is_running() and owner is not None:
                    live = _patient(lambda: connected_task_workers(client, task_key))
                    absent = 0 if owner in live else absent + 1
                    if absent >= ABSENT_POLLS:
                        _patient(partial(self._take_back, client, task_run_id, owner, claim))
                        return None
                time.sleep(WATCH_INTERVAL_S)

    def _take_back(self, client: Any, task_run_id: UUID, owner: str, claim: str) -> None:
        message = f"task worker {owner} went away while running step '{self.step.id}'; the step is submitted again"
        self.logger.warning("%s", message)
        client.set_task_run_state(task_run_id, Crashed(message=message), force=True)
        if _claim_of(client, claim, str(task_run_id)) is not None:
            client.delete_variable_by_name(claim)
        self.taken_from.append(owner)

    def _fetch(self, snapshot: str) -> None:
        """Bring a snapshot a worker made into the flow's own workspace (reports, diffs, export)."""
        workspace = run_resources(self.run).workspace
        if not workspace.has_commit(snapshot) and self.run.snapshot_remote is not None:
            SnapshotRemote.parse(self.run.snapshot_remote).fetch(Path(workspace.path), snapshot)
