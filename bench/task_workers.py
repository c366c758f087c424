"""Step throughput on task workers: one plan of N parallel 1 s steps, with 1, 2, 4… task workers.

A `prefect server start` (SQLite, its own home), a snapshot remote and a
shared result-storage directory in a temporary directory; for each worker
count, that many `agentic task-worker`s (each its own AGENTIC_HOME) and one
`agentic run --steps-on task-workers` of a plan of ``--steps`` independent
steps that each sleep 1 s in the sandbox. Prints, per worker count, the run's
wall time, steps per minute and the speed-up over one worker (near-linear
while the machine's cores are not the bottleneck; on a loaded 2-core machine
they are).

Usage: ``python bench/task_workers.py [--steps 64] [--workers 1,2,4]``.
Needs Docker and the sandbox image (``make setup``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from deploy_helpers import BIN, free_port

from prefect_agentic.stack import wait_healthy


def parallel_plan(plan_id: str, steps: int) -> str:
    lines = [f"id: {plan_id}", "version: 1", "goal: parallel sandboxed seconds", "steps:"]
    lines += [f"  - {{id: s{i:03d}, tool: shell, args: {{command: 'sleep 1'}}}}" for i in range(steps)]
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
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="agentic-bench-task-workers-"))
    repo = make_repo(root)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AGENTIC_"))}
    base = {**clean, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "results")}

    def env(machine: str, server: bool = False) -> dict[str, str]:
        (root / machine / "prefect").mkdir(parents=True, exist_ok=True)
        extra = {} if server else {"PREFECT_API_URL": api}
        return {**base, **extra, "PREFECT_HOME": str(root / machine / "prefect"),
                "AGENTIC_HOME": str(root / machine / "agentic"),
                "AGENTIC_SNAPSHOT_REMOTE": str(root / "snapshots.git")}

    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env("server", server=True), stdout=(root / "server.log").open("ab"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    results = []
    try:
        wait_healthy(api, server, root / "server.log", 180)
        for count in [int(n) for n in options.workers.split(",")]:
            workers = [subprocess.Popen([str(BIN / "agentic"), "task-worker"], env=env(f"w{count}-{i}"),
                                        stdout=(root / f"w{count}-{i}.log").open("ab"), stderr=subprocess.STDOUT,
                                        start_new_session=True) for i in range(count)]
            try:
                plan = root / f"plan-{count}.yaml"
                plan.write_text(parallel_plan(f"bench-tw-{count}", options.steps))
                time.sleep(5)  # the workers subscribe to the server's queue
                done = subprocess.run([str(BIN / "agentic"), "run", str(plan), "--repo", str(repo), "--json",
                                       "--steps-on", "task-workers"], env=env("flow"), capture_output=True,
                                      text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"run with {count} worker(s) failed:\n{done.stdout}\n{done.stderr[-4000:]}")
                report = json.loads(done.stdout)
                results.append((count, report["duration_s"]))
            finally:
                for worker in workers:
                    os.killpg(worker.pid, signal.SIGTERM)
                    worker.wait()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
    print(f"{options.steps} parallel 1 s steps on task workers (SQLite server, container per step); "
          f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    first_count, first_seconds = results[0]
    for count, seconds in results:
        print(f"{count} worker(s)  {seconds:7.1f} s   {options.steps / seconds * 60:7.1f} steps/minute   "
              f"speed-up {first_seconds / seconds:4.2f}x (ideal {count / first_count:.0f}x)")


if __name__ == "__main__":
    main()
