"""``process_kill``: the run's process is killed with SIGKILL at a seeded point of the run.

A step attempt the fault selects arms the kill: ``seconds`` after the attempt
started (at once for 0, before its tool runs), wherever the run is then (in
that step, in a later one, between them), the fault is recorded and the
process sends itself SIGKILL. Nothing of the process's own clean-up runs, as
when the kernel's OOM killer or a lost host ends it. The record is written
(not fsynced) before the kill, which a killed process does not lose. A run
whose steps end before the kill comes disarms it (``disarm``), so the kill
never lands in the CLI's or the campaign's code after the run.

Resuming is what a user does: run the plan again (same plan, repository and
base commit, so the same run key): completed steps come from the cache, the
killed run's containers are removed when the new run opens its sandbox.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

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
    os.kill(os.getpid(), signal.SIGKILL)
