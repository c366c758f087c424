"""Where the time of an `agentic run` goes: start-up (and Prefect's embedded API), plan, run.

A user waits from pressing Enter to the summary, so that is the duration the
summary reports, with its parts. The clock starts when this module is imported,
which ``cli/main.py`` does before it imports Prefect. It imports no Prefect
itself at import time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console

PROCESS_STARTED = time.monotonic()


@dataclass
class RunClock:
    """Marks the end of each part of a run, measured from the start of the process."""

    started: float = PROCESS_STARTED
    api_s: float | None = None
    """Seconds spent starting Prefect's embedded API (None: a server was configured)."""
    marks: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mark("plan_started")  # made when the command starts its own work

    def mark(self, part: str) -> None:
        self.marks[part] = time.monotonic()

    def summary(self, steps_s: float | None = None) -> str:
        """``22.0s (start-up 9.1s, of which Prefect's API 7.9s; plan 0.4s; run 12.5s, of which steps 2.2s)``.

        ``steps_s``: the flow's own time (the report's ``duration_s``); the rest
        of the run is Prefect creating and finishing the flow run.
        """
        plan_end = self.marks.get("plan", self.started)
        api_end = self.marks.get("api", plan_end)
        run_end = self.marks.get("run", time.monotonic())
        plan_started = self.marks.get("plan_started", self.started)
        plan_s = plan_end - plan_started
        start_up_s = (plan_started - self.started) + (api_end - plan_end)
        steps = f", of which steps {steps_s:.1f}s" if steps_s is not None else ""
        api = f", of which Prefect's API {self.api_s:.1f}s" if self.api_s is not None else ""
        return (f"{run_end - self.started:.1f}s (start-up {start_up_s:.1f}s{api}; plan {plan_s:.1f}s; "
                f"run {run_end - api_end:.1f}s{steps})")


def start_embedded_api(console: Console, clock: RunClock, *, show: bool = True) -> None:
    """Start Prefect's embedded API now, saying so, unless a Prefect server is configured.

    Prefect would start it anyway on the first API call, silently, and that
    takes seconds on a busy machine. Started here, the flow run reuses it (one
    embedded server per process).
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_ENABLED

    from prefect_agentic.settings import uses_embedded_api

    if not uses_embedded_api() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        clock.mark("api")
        return
    server = SubprocessASGIServer()
    if server.running:
        clock.mark("api")
        return
    if show:
        console.print("Starting Prefect's embedded API…", highlight=False)
    started = time.monotonic()
    server.start()
    clock.mark("api")
    clock.api_s = time.monotonic() - started
    if show:
        console.print(f"Prefect's embedded API is ready in {clock.api_s:.1f}s", highlight=False)
