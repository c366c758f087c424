"""What the global sandbox slot costs a step on a Prefect server on SQLite (a container per step).

The same chain of steps, on the same temporary server, in this one process, three ways:

  * no slot (``SandboxSettings.concurrency_limit=None``): the baseline;
  * the slot's calls through Prefect's own API client (what the pack did before):
    the server answers 503 when SQLite refuses the slot's write because another
    writer committed during its transaction, and the client tries again after 2 s;
  * the slot's calls through ``BusyRetryTransport`` (what the pack does): the
    busy answer is tried again after some milliseconds.

Prints each way's marginal cost of a step ((time of N+1 steps - time of 1) / N,
as bench/step_overhead.py), the ratio against the baseline, and how long the
slot's acquire calls took.

Usage: ``python bench/slot_acquire.py [--steps N] [--repeats R]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from uuid import UUID

import step_overhead as bench
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from prefect_agentic import concurrency


@contextmanager
def acquire_times() -> Iterator[list[float]]:
    """Seconds each slot acquire took while the block runs."""
    seen: list[float] = []
    original = concurrency._acquire

    def timed(client: SyncPrefectClient, names: list[str], lease_seconds: float) -> UUID:
        start = time.perf_counter()
        try:
            return original(client, names, lease_seconds)
        finally:
            seen.append(time.perf_counter() - start)

    concurrency._acquire = timed
    try:
        yield seen
    finally:
        concurrency._acquire = original


@contextmanager
def prefect_client_for_slots() -> Iterator[None]:
    """Slot calls through a plain Prefect client (its own 503 retries), as before the change."""
    with get_client(sync_client=True) as client:
        concurrency._clients[PREFECT_API_URL.value()] = client
        try:
            yield
        finally:
            concurrency._clients.pop(PREFECT_API_URL.value(), None)


def measure(label: str, step_cost: Callable[[], float]) -> tuple[str, float, list[float]]:
    with acquire_times() as seen:
        return label, step_cost(), seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="chain length N (default 10)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each plan (median)")
    options = parser.parse_args()
    repo = bench.make_repo()

    def cost(slot: bool, tag: str) -> Callable[[], float]:
        return lambda: bench.per_step_latency("per_step", repo, options.steps, options.repeats,
                                              slot=slot, tag=tag)

    with prefect_test_harness(server_startup_timeout=120):
        rows = [measure("no slot", cost(False, ""))]
        with prefect_client_for_slots():
            rows.append(measure("slot, Prefect's client", cost(True, "-prefect-client")))
        rows.append(measure("slot, BusyRetryTransport", cost(True, "-busy-retry")))
    print(f"per_step mode, SQLite Prefect server, chain of {options.steps} + 1 steps, "
          f"median of {options.repeats}")
    baseline = rows[0][1]
    for label, seconds, acquires in rows:
        line = f"{label:26s} {seconds * 1000:8.1f} ms a step   ratio {seconds / baseline:5.2f}x no slot"
        if acquires:
            slow = sum(1 for a in acquires if a > 1.0)
            line += (f"; {len(acquires)} acquires: median {statistics.median(acquires) * 1000:.0f} ms, "
                     f"max {max(acquires) * 1000:.0f} ms, {slow} over 1 s")
        print(line)


if __name__ == "__main__":
    main()
