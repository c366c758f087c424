"""Ctrl-C during `agentic run`: one press cancels the run, removes its containers and exits.

Why this module exists: on the embedded API (no ``PREFECT_API_URL``), Prefect
serves its ephemeral API from a child process (``SubprocessASGIServer``) in
the CLI's process group. A Ctrl-C at a terminal sends SIGINT to the whole
group, so the API server shut down at the same moment as the run was told to
stop; the run then reported its crash, its task states, logs and events to a
server that was gone, and Prefect's client retried each call with back-off.
On a busy machine the CLI hung for minutes after the containers were removed
(reproduced with ``stress-ng --cpu 2`` and a group-wide SIGINT).

The fix is at the cause: the CLI starts the embedded API server itself, with
SIGINT blocked while the child is spawned (a blocked signal stays blocked
across exec), so a Ctrl-C reaches only the CLI. The server still ends with
the CLI (Prefect stops it with SIGTERM at exit). ``interrupt_handler`` makes
the first Ctrl-C a KeyboardInterrupt as usual (the flow unwinds, removes its
containers and is marked crashed) and a second one quit at once, after
removing the run's containers.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPTED_EXIT_CODE = 130
"""128 + SIGINT, what shells report for a process ended by Ctrl-C."""


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread (and in any child started meanwhile); a Ctrl-C stays pending."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def interrupt_handler(on_first: Callable[[], None], on_second: Callable[[], None]) -> Iterator[None]:
    """First Ctrl-C: ``on_first()`` then KeyboardInterrupt; second: ``on_second()`` and exit 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = 0

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            on_first()
            raise KeyboardInterrupt
        on_second()
        os._exit(INTERRUPTED_EXIT_CODE)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
