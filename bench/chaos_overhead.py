"""What the fault injector costs a step attempt: off (no spec) and on with faults that miss.

The executor's per-attempt chaos code, timed in isolation (median of interleaved
repetitions, same process): ``off`` is the path every ordinary run takes (one
``None`` check); ``on, no hit`` builds an injector and asks it before and after
the tool for a spec of 8 faults that select another tool. A step attempt itself
costs hundreds of milliseconds (a container), see bench/step_overhead.py.

    .venv/bin/python bench/chaos_overhead.py
"""

from __future__ import annotations

import statistics
import time

from prefect_agentic.chaos import ChaosInjector, ChaosSpec, Fault
from prefect_agentic.record.recorder import LoggingRecorder

CALLS = 20_000
ROUNDS = 7


def attempt_path(spec: ChaosSpec | None, recorder: LoggingRecorder) -> None:
    """The executor's chaos lines for one attempt, the tool call left out."""
    chaos = None if spec is None else ChaosInjector(spec, recorder, "shell", "step", 1)
    if chaos is not None:
        chaos.start_attempt()
        chaos.before_tool()
    if chaos is not None:
        chaos.after_tool()


def per_call_ns(spec: ChaosSpec | None, recorder: LoggingRecorder) -> float:
    started = time.perf_counter_ns()
    for _ in range(CALLS):
        attempt_path(spec, recorder)
    return (time.perf_counter_ns() - started) / CALLS


def main() -> None:
    recorder = LoggingRecorder()
    missing = ChaosSpec(seed=1, faults=[Fault(kind="tool_exit", tools=f"deploy.{i}") for i in range(8)])
    off, on = [], []
    for _ in range(ROUNDS):  # interleaved, so machine load hits both alike
        off.append(per_call_ns(None, recorder))
        on.append(per_call_ns(missing, recorder))
    print(f"chaos off:          {statistics.median(off):8.0f} ns per step attempt")
    print(f"chaos on, no hit:   {statistics.median(on):8.0f} ns per step attempt")


if __name__ == "__main__":
    main()
