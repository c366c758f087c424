"""What Prefect's flow-run heartbeat thread adds to the end of every flow run on a server.

Prefect 3.9 starts a heartbeat thread for each flow run (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``,
180 s unless set) and joins it when the run ends. The thread sleeps one second
at a time and checks between sleeps whether the run is over, so the join waits
for the current second to run out: with heartbeats on, a flow run lasts a whole
number of seconds past the thread's start. A run of ours on a server keeps
them on (the crash automations watch them); only a run on the embedded API
turns them off (``prefect_agentic.settings.embedded_run_settings``).

The bench runs a plain flow of one trivial task against the server at
``PREFECT_API_URL``, ``--runs`` times with heartbeats on and off, interleaved,
and prints the median wall time of each and their difference. With
``bench/patches/prefect-heartbeat-stops-at-once.patch`` applied (the thread
waits on the run's stop event instead of sleeping), both medians match.

Usage: ``PREFECT_API_URL=http://127.0.0.1:4200/api python bench/heartbeat_join.py [--runs 15]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

from prefect import flow, task
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings


@task
def trivial() -> int:
    return 1


@flow(name="bench-heartbeat-join")
def one_task() -> int:
    return trivial()


def timed_run(heartbeat: int | None) -> float:
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: heartbeat}):
        start = time.perf_counter()
        one_task()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="flow runs of each kind (default 15)")
    runs = parser.parse_args().runs
    if not os.environ.get("PREFECT_API_URL"):
        sys.exit("set PREFECT_API_URL to a Prefect server (the embedded API runs without heartbeats here)")
    heartbeat = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() or 180
    print(f"API {os.environ['PREFECT_API_URL']}; {runs} interleaved runs of a one-task flow each way; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    timed_run(None)  # warm-up: imports, the flow's registration
    on: list[float] = []
    off: list[float] = []
    for _ in range(runs):
        on.append(timed_run(heartbeat))
        off.append(timed_run(None))
    print(f"heartbeats every {heartbeat} s   median {statistics.median(on) * 1000:7.1f} ms "
          f"(min {min(on) * 1000:.1f}, max {max(on) * 1000:.1f})")
    print(f"heartbeats off           median {statistics.median(off) * 1000:7.1f} ms "
          f"(min {min(off) * 1000:.1f}, max {max(off) * 1000:.1f})")
    print(f"the heartbeat thread's join adds {(statistics.median(on) - statistics.median(off)) * 1000:+.1f} ms "
          "a flow run (median)")


if __name__ == "__main__":
    main()
