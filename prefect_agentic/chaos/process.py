"""``process_kill``: the run's process is killed with SIGKILL at a seeded point of the run.

A step attempt the fault selects arms the kill: ``seconds`` after the attempt
started (at once for 0, before its tool runs), wherever the run is then (in
that step, in a later one, between them), the fault is recorded and the
process sends itself SIGKILL. Nothing of the process's own clean-up runs, as
when the kernel's OOM killer or a lost host ends it. The record is written
(not fsynced) before the kill, which a killed process does not lose. Its
Prefect event is not sent there: the audit log hands it to Prefect's events
worker, which sends it later from a queue, and a kill right after the record
would lose it (and every event still queued). So the queued events and logs
are sent first, waiting at most ``SEND_PENDING_S``; the run goes on meanwhile
(tens of milliseconds, usually). A run whose steps end before the kill comes
disarms it (``disarm``), so the kill never lands in the CLI's or the
campaign's code after the run, unless the run ends during that wait.

Resuming is what a user does: run the plan again (same plan, repository and
base commit, so the same run key): completed steps come from the cache, the
killed run's containers are removed when the new run opens its sandbox.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

from prefect.events.worker import EventsWorker

SEND_PENDING_S = 10.0
"""How long a kill waits for Prefect's queued events (the fault's own included) to reach the API."""

_lock = threading.Lock()
_armed: threading.Event | None = None


def arm(seconds: float, record: Callable[[], None]) -> None:
    """Kill this process in ``seconds`` (now, in this thread, for 0), recording the fault first."""
    global _armed
    if seconds <= 0:
        _kill(record)
        return
    cancelled = threading.Event()
    with _lock:
        if _armed is not None:  # one kill at a time: the earliest armed one stands
            return
        _armed = cancelled

    def later() -> None:
        if not cancelled.wait(seconds):
            _kill(record)

    threading.Thread(target=later, name="agentic-chaos-process-kill", daemon=True).start()


def disarm() -> None:
    """The run's steps are over: a kill not yet come does not come."""
    global _armed
    with _lock:
        if _armed is not None:
            _armed.set()
            _armed = None


def _kill(record: Callable[[], None]) -> None:
    record()
    _send_pending_events()
    os.kill(os.getpid(), signal.SIGKILL)


def _send_pending_events() -> None:
    """Let Prefect's queued events and logs reach the API (at most ``SEND_PENDING_S``), the fault's among them.

    Draining stops Prefect's services (its events and log workers) once their queues are sent; an
    event emitted after that starts a new worker, as after any drain. It runs in a thread of its own:
    with no event loop there, ``drain_all`` waits instead of handing back a coroutine, whichever
    thread the kill comes from.
    """
    sender = threading.Thread(target=EventsWorker.drain_all, kwargs={"timeout": SEND_PENDING_S, "at_exit": False},
                              name="agentic-chaos-send-events", daemon=True)
    sender.start()
    sender.join(SEND_PENDING_S + 1)
