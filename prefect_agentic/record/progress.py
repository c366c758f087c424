"""In-process progress notifications of step lifecycle.

Steps and flows publish; whoever displays progress (the CLI, a test)
subscribes. Publishing never fails the run: a listener that raises is logged
and ignored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import Enum

from pydantic import BaseModel

logger = logging.getLogger("prefect_agentic.progress")


class StepStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    CACHED = "cached"
    FAILED = "failed"
    NOT_RUN = "not_run"


class StepEvent(BaseModel):
    run_key: str
    step_id: str
    status: StepStatus
    attempt: int = 0
    message: str = ""


Listener = Callable[[StepEvent], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Receive every step event of this process; returns the unsubscribe function."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def publish(event: StepEvent) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a display problem must never fail a run
            logger.exception("progress listener failed")
