"""Throughput of prefect-agentic on Prefect's distributed engine, measured on this machine.

A Prefect server on PostgreSQL, ``run-plan/default`` deployed from a fresh
checkout, ``--workers`` process workers on ``agentic-process``; ``--runs``
flow runs of a one-step plan (a 1 s sandboxed command) submitted at once.
Prints:
  * runs per minute (first submission to last completion);
  * the per-run overhead of going through a deployment: mean latency of a
    flow run (created → completed) against the same plan run in this process
    with ``run_plan`` on the same server (the baseline), and their ratio.

Needs what the scale-out test needs (``make setup``: Docker, the sandbox
image, PostgreSQL). Usage: ``python bench/scale_out.py [--runs 20] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
_STATE = Path(tempfile.mkdtemp(prefix="agentic-bench-scale-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_HOME", str(_STATE / "prefect"))
os.environ.setdefault("AGENTIC_HOME", str(_STATE / "agentic"))

from deploy_helpers import PrefectStack, free_port, postgres, postgres_database_url, wait_for_state  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402

from prefect_agentic.blocks import SandboxSettings  # noqa: E402
from prefect_agentic.flows.run_plan import run_plan  # noqa: E402
from prefect_agentic.plan.loader import plan_from_data  # noqa: E402
from prefect_agentic.submit import submit_plan  # noqa: E402


def one_step_plan(plan_id: str) -> dict:  # type: ignore[type-arg]
    return {"id": plan_id, "goal": "one sandboxed second",
            "steps": [{"id": "work", "tool": "shell", "args": {"command": "sleep 1"}}]}


def make_repo() -> Path:
    repo = _STATE / "repo"
    repo.mkdir()
    (repo / "f").write_text("x\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull}
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"]):
        subprocess.run(command, cwd=repo, check=True, env=env)
    return repo


def in_process_seconds(repo: Path, repeats: int = 3) -> float:
    """Baseline: the same plan run by ``run_plan`` in this process, on the same server."""
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        run_plan(plan=plan_from_data(one_step_plan(f"bench-local-{i}"), "bench"), repo=str(repo))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=4, help="flow runs per worker at once")
    options = parser.parse_args()
    repo = make_repo()

    database = f"agentic_bench_{secrets.token_hex(4)}"
    postgres(f"CREATE DATABASE {database}")
    stack = PrefectStack(_STATE / "stack", free_port(),
                         extra_env={"PREFECT_API_DATABASE_CONNECTION_URL": postgres_database_url(database)})
    try:
        stack.start_server()
        for command in (("agentic", "init"), ("prefect", "--no-prompt", "deploy", "--name", "run-plan/default")):
            done = stack.run(*command)
            assert done.returncode == 0, done.stdout + done.stderr
        for i in range(options.workers):
            stack.start_worker(f"w{i + 1}", limit=options.limit)
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            baseline = in_process_seconds(repo)
            sandbox = SandboxSettings().model_dump(mode="json")
            started = time.perf_counter()
            ids = [submit_plan(plan_from_data(one_step_plan(f"bench-scale-{i:03d}"), "bench"), str(repo),
                               parameters={"sandbox": sandbox}).id for i in range(options.runs)]
        finished = [wait_for_state(stack, i, {"Completed", "Failed", "Crashed"}, timeout=1800) for i in ids]
        elapsed = time.perf_counter() - started
        with stack.client() as client:
            startup = statistics.mean(_start_up_seconds(client.read_flow_run_states(i)) for i in ids)
    finally:
        stack.stop_workers()
        stack.stop_server()
        postgres(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")

    ok = sum(1 for f in finished if f.state.name == "Completed")
    latency = statistics.mean((f.end_time - f.expected_start_time).total_seconds() for f in finished)
    running = statistics.mean(f.total_run_time.total_seconds() for f in finished)
    per_run = startup + running
    print(f"{options.runs} flow runs, {options.workers} workers x {options.limit}, PostgreSQL server; "
          f"{ok} completed; cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    print(f"throughput                 {ok / elapsed * 60:8.1f} runs/minute ({elapsed:.1f} s in all)")
    print(f"in-process run_plan        {baseline:8.2f} s   (baseline: same plan, same server, this process)")
    print(f"deployment run, start-up   {startup:8.2f} s   (Pending -> Running: flow-run process, pull "
          f"steps, flow load)")
    print(f"deployment run, running    {running:8.2f} s   (Running -> Completed, in the flow-run process)")
    print(f"deployment run, per run    {per_run:8.2f} s   ratio {per_run / baseline:5.2f}x baseline, "
          f"overhead {per_run - baseline:+.2f} s a run")
    print(f"  created -> completed     {latency:8.2f} s   (mean, with queueing behind the workers' slots)")


def _start_up_seconds(states: list) -> float:  # type: ignore[type-arg]
    """From the run's first Pending state to its first Running state."""
    pending = next(s.timestamp for s in states if s.name == "Pending")
    running = next(s.timestamp for s in states if s.name == "Running")
    return (running - pending).total_seconds()


if __name__ == "__main__":
    main()
