"""Step throughput on task workers: one plan of N parallel 1 s steps, with 1, 2, 4… task workers.

A `prefect server start` (SQLite, its own home; on PostgreSQL with
``--postgres``), a snapshot remote and a
shared result-storage directory in a temporary directory; for each worker
count, that many fresh `agentic task-worker`s (each its own AGENTIC_HOME) and
one `agentic run --steps-on task-workers` of a plan of ``--steps``
independent steps that each sleep 1 s in the sandbox, the worker counts
interleaved over ``--rounds`` rounds. Prints, per worker count, the median run's
wall time, steps per minute, the speed-up over one worker (near-linear
while the machine's cores are not the bottleneck) and how busy the machine's
cores were during the run (from ``/proc/stat``): a speed-up that stops while
the cores are near 100 % busy is the machine's ceiling, not the queue's.

Usage: ``python bench/task_workers.py [--steps 64] [--workers 1,2,4] [--rounds 3] [--postgres]``.
Needs Docker and the sandbox image (``make setup``; ``--postgres`` needs
``scripts/setup.sh postgres``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from deploy_helpers import BIN, free_port, postgres, postgres_database_url
from machine_cpu import busy_fraction, cpu_times

from prefect_agentic.stack import wait_healthy


def parallel_plan(plan_id: str, steps: int) -> str:
    """``steps`` independent ``sleep 1`` steps, each command naming its plan.

    On task workers a step's cache key holds the snapshot remote's epoch, not a
    run's workspace, so an identical step (same id, command and input snapshot)
    of an earlier run would be a cache hit; naming the plan makes every run's
    steps its own.
    """
    lines = [f"id: {plan_id}", "version: 1", "goal: parallel sandboxed seconds", "steps:"]
    lines += [f"  - {{id: s{i:03d}, tool: shell, args: {{command: ': {plan_id}; sleep 1'}}}}" for i in range(steps)]
    return "\n".join(lines) + "\n"


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    (repo / "f").write_text("x\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull}
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"]):
        subprocess.run(command, cwd=repo, check=True, env=env)
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is printed)")
    parser.add_argument("--postgres", action="store_true", help="the server on PostgreSQL (a temporary database)")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="agentic-bench-task-workers-"))
    repo = make_repo(root)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AGENTIC_"))}
    base = {**clean, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "results")}
    database = f"agentic_bench_tw_{secrets.token_hex(4)}" if options.postgres else None
    if database:
        postgres(f"CREATE DATABASE {database}")
        base["PREFECT_API_DATABASE_CONNECTION_URL"] = postgres_database_url(database)

    def env(machine: str, server: bool = False) -> dict[str, str]:
        (root / machine / "prefect").mkdir(parents=True, exist_ok=True)
        extra = {} if server else {"PREFECT_API_URL": api}
        return {**base, **extra, "PREFECT_HOME": str(root / machine / "prefect"),
                "AGENTIC_HOME": str(root / machine / "agentic"),
                "AGENTIC_SNAPSHOT_REMOTE": str(root / "snapshots.git")}

    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env("server", server=True), stdout=(root / "server.log").open("ab"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    def timed_run(count: int, label: str, steps: int) -> tuple[float, float]:
        """One `agentic run` of ``steps`` parallel steps on ``count`` fresh task workers: (seconds, cores busy)."""
        workers = [subprocess.Popen([str(BIN / "agentic"), "task-worker"], env=env(f"{label}-w{i}"),
                                    stdout=(root / f"{label}-w{i}.log").open("ab"), stderr=subprocess.STDOUT,
                                    start_new_session=True) for i in range(count)]
        try:
            plan = root / f"plan-{label}.yaml"
            plan.write_text(parallel_plan(f"bench-tw-{label}", steps))
            time.sleep(5)  # the workers subscribe to the server's queue
            cpu_before = cpu_times()
            done = subprocess.run([str(BIN / "agentic"), "run", str(plan), "--repo", str(repo), "--json",
                                   "--steps-on", "task-workers"], env=env("flow"), capture_output=True,
                                  text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"run {label} failed:\n{done.stdout}\n{done.stderr[-4000:]}")
            report = json.loads(done.stdout)
            cached = [step["step_id"] for step in report["steps"] if step.get("cached")]
            if cached:
                raise SystemExit(f"run {label}: steps came from the cache, the figure would be void: {cached[:5]}")
            return report["duration_s"], busy_fraction(cpu_before, cpu_times())
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait()

    counts = [int(n) for n in options.workers.split(",")]
    results: dict[int, list[tuple[float, float]]] = {count: [] for count in counts}
    try:
        wait_healthy(api, server, root / "server.log", 180)
        timed_run(1, "warm-up", 2)  # untimed: the remote's first push, the server's first task runs
        for round_ in range(options.rounds):  # interleaved; every other round in reverse order
            for count in counts if round_ % 2 == 0 else counts[::-1]:
                results[count].append(timed_run(count, f"{count}-{round_}", options.steps))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
        if database:
            postgres(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    print(f"{options.steps} parallel 1 s steps on task workers ({'PostgreSQL' if database else 'SQLite'} server, "
          f"container per step); cores {os.cpu_count()}, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print(f"median of {options.rounds} interleaved rounds (after an untimed warm-up run)")
    first_seconds = statistics.median(seconds for seconds, _ in results[counts[0]])
    for count in counts:
        seconds = statistics.median(s for s, _ in results[count])
        busy = statistics.median(b for _, b in results[count])
        print(f"{count} worker(s)  {seconds:7.1f} s   {options.steps / seconds * 60:7.1f} steps/minute   "
              f"speed-up {first_seconds / seconds:4.2f}x (ideal {count / counts[0]:.0f}x)   "
              f"cores busy {busy:4.0%}")


if __name__ == "__main__":
    main()
