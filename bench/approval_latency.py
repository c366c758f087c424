"""Time from an approver's click to the flow run going on: paused vs suspended gates, with the
server and the process worker that `agentic up` starts.

`run-plan` is deployed to the worker's process pool (`agentic worker`: flow runs
start warm) and, as the baseline, to a second process pool served by Prefect's
own `prefect worker start` (flow runs start cold). Each repetition submits a
two-step plan (a writing step, then a gated one) three times: with gates that
pause (the flow-run process waits, polling), and with gates that suspend (the
process ends; after the answer a worker starts the run again and it goes on
from the top on cached steps) on the warm and on the cold worker; the order
rotates between repetitions.
When the run waits, an approver waits a random part of a second (people do not
click in step with any poll) and "clicks": it resumes the run through the API
with an approval, as the UI's form does. The latency is from just before that
call to the gate's ``approval`` record (the flow run has the answer and goes
on). For suspended runs the wait is split into: the worker taking the run again
(state Pending), the new process starting up to ``run_resumed`` (its first
audit record: Python, Prefect and the pack imported, the flow run loaded), and
the run from the top to the gate (cached steps).

Usage: ``python bench/approval_latency.py [--samples N]`` (N ≥ 6 per mode).
It exits 1 when the warm suspended median is above 3 s.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from uuid import UUID

_STATE = Path(tempfile.mkdtemp(prefix="agentic-bench-gates-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["AGENTIC_HOME"] = str(_STATE / "agentic")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.deployments import run_deployment  # noqa: E402
from prefect.deployments.runner import EntrypointType  # noqa: E402
from prefect.flow_runs import resume_flow_run  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402

from prefect_agentic.record.audit import AuditRecord, parse_log  # noqa: E402
from prefect_agentic.stack import start_stack, stop_stack, worker_settings  # noqa: E402

IMAGE = os.environ.get("AGENTIC_SANDBOX_IMAGE", "prefect-agentic/sandbox:2")
TARGET_S = 3.0
MODES = ("pause", "suspend", "suspend-cold")
COLD_POOL = "bench-cold"
"""Served by Prefect's own process worker: the baseline of the warm start."""


def make_repo() -> Path:
    repo = _STATE / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("bench\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    return repo


def plan(mode: str, index: int) -> dict[str, object]:
    return {"id": f"latency-{mode}-{index}", "goal": "measure the gate", "steps": [
        {"id": "prepare", "tool": "shell", "writes_workspace": True, "args": {"command": "echo x > x.txt"}},
        {"id": "gated", "tool": "shell", "depends_on": ["prepare"], "requires_approval": True,
         "args": {"command": "cat x.txt"}}]}


def records(flow_run_id: UUID) -> list[AuditRecord]:
    log = Path(os.environ["AGENTIC_HOME"]) / "audit" / "runs" / f"{flow_run_id}.jsonl"
    return parse_log(log.read_bytes().splitlines()) if log.exists() else []


def wait_until(check, what: str, timeout: float = 300):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise TimeoutError(what)


def one_approval(mode: str, index: int, repo: Path) -> dict[str, float]:
    """Seconds from the click to the gate's approval record (and, suspended, its parts)."""
    deployment = "run-plan/bench-cold" if mode == "suspend-cold" else "run-plan/bench"
    flow_run = run_deployment(deployment, timeout=0, parameters={
        "plan": plan(mode, index), "repo": str(repo), "sandbox": {"image": IMAGE},
        "gates": {"mode": mode.split("-")[0], "poll_interval_seconds": 0.5}})
    with get_client(sync_client=True) as client:
        wait_until(lambda: (s := client.read_flow_run(flow_run.id).state) and s.is_paused(), "paused")
    time.sleep(random.uniform(0, 1))
    clicked = time.time()
    resume_flow_run(flow_run.id, run_input={"decision": "approve", "approver": "bench"})
    approval = wait_until(lambda: next((r for r in records(flow_run.id) if r.kind == "approval"), None),
                          "approval recorded")
    parts = {"total": approval.at.timestamp() - clicked}
    with get_client(sync_client=True) as client:
        final = wait_until(lambda: (s := client.read_flow_run(flow_run.id).state) and s.is_final() and s,
                           "finished")
        assert final.is_completed(), final
        if mode.startswith("suspend"):
            history = client.read_flow_run_states(flow_run.id)
            taken = min(s.timestamp.timestamp() for s in history
                        if s.name == "Pending" and s.timestamp.timestamp() > clicked)
            resumed = next(r for r in records(flow_run.id) if r.kind == "run_resumed")
            parts |= {"worker takes it": taken - clicked,
                      "process start-up": resumed.at.timestamp() - taken,
                      "from the top to the gate": approval.at.timestamp() - resumed.at.timestamp()}
    return parts


def deploy() -> None:
    from prefect_agentic.flows.run_plan import run_plan
    from prefect_agentic.work_pools import PROCESS_POOL, ensure_work_pools

    ensure_work_pools({PROCESS_POOL: "process", COLD_POOL: "process"})  # the workers make them too, maybe later
    for name, pool in (("bench", PROCESS_POOL), ("bench-cold", COLD_POOL)):
        run_plan.to_deployment(name=name, entrypoint_type=EntrypointType.MODULE_PATH, work_pool_name=pool).apply()


def start_cold_worker(api_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PREFECT_API_URL": api_url, **worker_settings()}
    log = (_STATE / "cold-worker.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", COLD_POOL,
                             "--type", "process"], env=env, stdout=log, stderr=log, start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6, help="approvals per mode (at least 6)")
    samples = max(6, parser.parse_args().samples)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stack = start_stack(port=port)
    cold = start_cold_worker(stack.api_url)
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    try:
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            deploy()
            repo = make_repo()
            one_approval("suspend", -1, repo)  # the warm worker's first run starts its warm process
            for index in range(samples):
                turn = index % len(MODES)
                for mode in MODES[turn:] + MODES[:turn]:
                    results[mode].append(one_approval(mode, index, repo))
    finally:
        os.killpg(cold.pid, signal.SIGTERM)
        stop_stack()
    print(f"click -> the gate has the answer, {samples} approvals per mode, interleaved; worker "
          f"settings {worker_settings()}; {datetime.now().isoformat(timespec='seconds')}")
    labels = {"pause": "paused", "suspend": "suspended, warm", "suspend-cold": "suspended, cold"}
    for mode in MODES:
        totals = [r["total"] for r in results[mode]]
        print(f"  {labels[mode]:<16} median {statistics.median(totals):5.2f} s, min {min(totals):5.2f} s, "
              f"max {max(totals):5.2f} s")
    for mode in ("suspend", "suspend-cold"):
        for part in ("worker takes it", "process start-up", "from the top to the gate"):
            values = [r[part] for r in results[mode]]
            print(f"    {labels[mode]}, {part:<26} median {statistics.median(values):5.2f} s")
    paused = statistics.median(r["total"] for r in results["pause"])
    suspended = statistics.median(r["total"] for r in results["suspend"])
    cold_median = statistics.median(r["total"] for r in results["suspend-cold"])
    print(f"warm/cold suspended median ratio {suspended / cold_median:4.2f}; suspended/paused {suspended / paused:4.2f}; "
          f"suspended (warm) median {suspended:.2f} s, target <= {TARGET_S:.1f} s: "
          f"{'met' if suspended <= TARGET_S else 'MISSED'}")
    sys.exit(0 if suspended <= TARGET_S else 1)


if __name__ == "__main__":
    main()
