"""A plan step as a cached, retryable Prefect task.

The cache key is ours, not Prefect's default (which includes the flow run id
and so never hits across runs): the step spec, the tool's name and the version
the run pinned (so a newer pack on the worker never redoes a completed step),
the sandbox image and the snapshot the step starts from. A step is a function
of exactly these, so a later run (a resume after a crash, or a re-run) takes
every step whose inputs did not change from the cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from prefect import Task, task
from prefect.context import TaskRunContext
from prefect.runtime import task_run as task_run_runtime
from prefect.states import State
from prefect.tasks import exponential_backoff

from prefect_agentic.concurrency import limit_names
from prefect_agentic.executor import RunContext, StepResult, execute_step, pinned_tool_version
from prefect_agentic.plan.models import Step
from prefect_agentic.record.progress import StepEvent, StepStatus, publish

STEP_TASK_RUN_NAME = "{step.id}"
"""A step's task run is named after its step (Prefect formats the name with the task's parameters)."""


def input_snapshot_of(run: RunContext, input_result: StepResult | None) -> str:
    return input_result.snapshot if input_result is not None else run.base_snapshot


def step_cache_key(context: TaskRunContext | None, parameters: dict[str, Any]) -> str:
    """Cache key from (step spec, pinned tool version, sandbox image, input snapshot).

    The workspace epoch is part of it too: a cached result is only usable
    while the workspace holding its snapshot exists.
    """
    step: Step = parameters["step"]
    run: RunContext = parameters["run"]
    payload = {
        "step": step.model_dump(mode="json", exclude={"description"}),
        "tool": [step.tool, pinned_tool_version(run, step.tool)],
        "image": run.sandbox.image,
        "input_snapshot": input_snapshot_of(run, parameters.get("input_result")),
        "workspace_epoch": run.workspace_epoch,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return f"agentic-step-{digest}"


def _retryable(task: Task[Any, Any], task_run: Any, state: State[Any]) -> bool:
    """Retry only what another attempt can fix (unmet outcome, timeout, engine hiccup)."""
    return bool(getattr(state.data, "retryable", False))


@task(persist_result=True, result_serializer="json", cache_key_fn=step_cache_key)
def run_step(step: Step, run: RunContext, input_result: StepResult | None = None) -> StepResult:
    """Execute one plan step (see ``executor.execute_step``).

    A plain (sync) task without a Prefect task timeout: the step's deadline
    is enforced by the tool context and the sandbox, which kills the container
    (Prefect cannot cancel a task in a worker thread, and would log a warning
    for every step that has a timeout, cached ones too). An async
    task would pay for a fresh event loop and API client per run, which made a
    resume from the cache four times slower (``bench/step_overhead.py``).
    """
    attempt = task_run_runtime.get_run_count() or 1
    publish(StepEvent(run_key=run.run_key, step_id=step.id, status=StepStatus.RUNNING, attempt=attempt))
    snapshot = input_snapshot_of(run, input_result)
    return execute_step(step, run, snapshot, attempt)


def limited_tags() -> frozenset[str]:
    """The tags that have a concurrency limit on the API (Prefect keeps them as ``tag:<name>`` limits)."""
    return frozenset(name.removeprefix("tag:") for name in limit_names() if name.startswith("tag:"))


def step_tags(plan_id: str, tool: str) -> set[str]:
    """The step's tags (``plan:<id>``, ``tool:<name>``), only when one of them has a tag concurrency limit.

    Prefect's task engine asks the server for concurrency slots for every
    tagged task run. On SQLite (the embedded API) that call sometimes meets
    "database is locked", and the client retries it only after 2 s, which
    stalls the step (``bench/step_overhead.py`` counts these). Untagged task
    runs skip the call; a limit created with ``prefect concurrency-limit create
    plan:<id> N`` (or ``tool:<name>``) still holds, because then the steps are
    tagged. Reading whether a limit exists is a read, which SQLite never refuses.
    """
    tags = {f"plan:{plan_id}", f"tool:{tool}"}
    return tags if tags & limited_tags() else set()


def step_task(step: Step, plan_id: str, *, refresh_cache: bool = False) -> Task[..., StepResult]:
    """``run_step`` configured for ``step``: tags, retries, backoff (its timeout is the sandbox's).

    ``refresh_cache``: run it and replace its cached result (``--fresh``). The
    task run is named after the step. Steps configured alike share one task:
    making a ``Task`` costs about half a millisecond (Prefect reads the step
    function's source each time), and a chain paid it between one step's end
    and the next one's start.
    """
    return _configured_run_step(refresh_cache, frozenset(step_tags(plan_id, step.tool)), step.retries,
                                step.retry_backoff_seconds, step.retry_jitter)


@functools.lru_cache(maxsize=256)
def _configured_run_step(refresh_cache: bool, tags: frozenset[str], retries: int, backoff_seconds: float,
                         jitter: float | None) -> Task[..., StepResult]:
    return run_step.with_options(
        refresh_cache=refresh_cache or None,
        task_run_name=STEP_TASK_RUN_NAME,
        tags=set(tags),
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_seconds)(retries) if retries else 0,
        retry_jitter_factor=jitter,
        retry_condition_fn=_retryable,
    )
