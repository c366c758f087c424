"""Prefect's log and event services, ended with a bound.

Prefect sends logs and events from background services on its global event loop and, at a
test harness's end and at interpreter exit, waits for each to finish what it holds, without a
bound. A service whose task never returns then hangs the test process: seen when Prefect's
event service, which keeps the API address it started on, retried sending to a server a test
module had already stopped. ``drain`` stops them all, waits at most ``timeout`` seconds, and
cancels any still running, saying where each was waiting, so the session and the interpreter
can end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import warnings
from collections.abc import Iterator
from typing import Any

from prefect._internal.concurrency.services import _active_services
from prefect._internal.concurrency.threads import get_global_loop


def drain(timeout: float, *, warn: bool = True) -> None:
    """Stop Prefect's services and wait for them; cancel any still running after ``timeout``
    seconds, with a warning saying where each waited when ``warn``."""
    services = list(_active_services)
    concurrent.futures.wait([service._drain() for service in services], timeout=timeout)
    stuck = [s for s in services if s._done_event is not None and not s._done_event.is_set()]
    if not stuck:
        return
    loop = get_global_loop()._loop
    waiting = asyncio.run_coroutine_threadsafe(_cancel_runs_of(stuck), loop).result(timeout=30)
    if warn:
        warnings.warn(f"{len(stuck)} Prefect service(s) had not finished {timeout} s after being stopped "
                      "and were cancelled; where each was waiting:\n" + "\n".join(waiting), stacklevel=1)


async def _cancel_runs_of(services: list[Any]) -> list[str]:
    """Cancel the ``_run`` task of each service (its ``finally`` marks it done); where each waited."""
    waiting, cancelled = [], []
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if frame is not None and frame.f_locals.get("self") in services:
            waiting.append(f"{type(frame.f_locals['self']).__name__}: " + " <- ".join(_awaiting(task.get_coro())))
            task.cancel()
            cancelled.append(task)
    if cancelled:
        await asyncio.wait(cancelled, timeout=20)  # their `finally` (closing clients) runs first
    return waiting


def _awaiting(coro: Any) -> Iterator[str]:
    """The chain of coroutines ``coro`` is suspended in, outermost first."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            yield f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno})"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
