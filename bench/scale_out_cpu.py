"""Where a deployed run's CPU goes: prefect-agentic against the plain Prefect floor of ``scale_out.py``.

When a pool's workers run more flow runs at once than the machine has cores,
throughput is CPU-bound, and the ratio of the two kinds' CPU per run bounds
the ratio of their throughputs. This bench runs the same deployments as
``bench/scale_out.py`` (the floor ``scale-out-floor/floor`` and
``run-plan/default`` with a one-step ``sleep 1`` plan, one PostgreSQL-backed
server, one worker) but ONE run at a time on an otherwise idle machine, and
charges each run the CPU time the machine spent from its submission until a
moment after its terminal state, split by who spent it:

  * server: the ``prefect server start`` process tree (API, services, events);
  * postgres: every PostgreSQL process;
  * flow run: the worker's process tree, which includes each flow-run process
    it started (and the git processes those ran) once it has ended;
  * engine: dockerd and containerd;
  * rest: the machine's busy time minus all of the above (container
    processes and their runtime shims, this bench, anything else running).

Kinds alternate (floor first, then ours first...) after one untimed run of
each; the medians over ``--runs`` runs of each kind are printed, with the
ratio floor/ours of the machine's CPU per run (the CPU-bound throughput bound,
next to ``scale_out.py``'s target of >= 0.9x). ``--warm`` uses ``agentic worker``
(flow runs forked from a warm process) instead of ``prefect worker start``.

Needs ``make setup`` (Docker, the sandbox image, PostgreSQL). Usage:
``python bench/scale_out_cpu.py [--runs 6] [--warm] [--same-work] [--without-crash-automations]``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_cpu import by_part, machine_busy  # /proc only: loads nothing of Prefect

# scale_out sets the bench's environment (PREFECT_HOME, AGENTIC_HOME...) before Prefect loads: import all through it.
from scale_out import (
    FLOOR_DEPLOYMENT,
    PREFECT_API_URL,
    SAME_WORK_DEPLOYMENT,
    TERMINAL,
    PrefectStack,
    SandboxSettings,
    compile_like_an_install,
    deployed_stack,
    make_repo,
    one_step_plan,
    plan_from_data,
    run_deployment,
    submit_plan,
    temporary_settings,
    wait_for_state,
)

PARTS = ("server", "postgres", "flow run", "engine")
SETTLE_SECONDS = 3.0
"""Idle time before and after each run, so that the tail of one run (heartbeat, log flush) is not charged to the next."""


def charge(stack: PrefectStack, submit: Callable[[], UUID], server_pid: int, worker_pid: int) -> dict[str, float]:
    """The CPU one run costs, by part (see the module's docstring)."""
    time.sleep(SETTLE_SECONDS)
    busy, parts = machine_busy(), by_part(server_pid, worker_pid)
    flow_run = wait_for_state(stack, submit(), TERMINAL, timeout=600)
    if flow_run.state.name != "Completed":
        raise SystemExit(f"flow run {flow_run.id} ended {flow_run.state.name}: the bench is void")
    time.sleep(SETTLE_SECONDS)
    spent = {name: cpu - parts[name] for name, cpu in by_part(server_pid, worker_pid).items()}
    spent["machine"] = machine_busy() - busy
    spent["rest"] = spent["machine"] - sum(spent[p] for p in PARTS)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="timed runs of each kind")
    parser.add_argument("--warm", action="store_true", help="`agentic worker` (warm fork) instead of `prefect worker`")
    parser.add_argument("--without-crash-automations", action="store_true",
                        help="delete the crash automations `agentic init` made (to see what their triggers cost the server)")
    parser.add_argument("--same-work", action="store_true",
                        help="also plain Prefect doing our run's work without our code (scale_out.py's --same-work)")
    options = parser.parse_args()
    repo, token = make_repo(), secrets.token_hex(4)
    kinds = ("floor", "ours", "same") if options.same_work else ("floor", "ours")
    spent: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    with deployed_stack(token, "agentic_bench_cpu") as stack:
        compile_like_an_install(stack)
        if options.without_crash_automations:
            from prefect.automations import Automation  # after scale_out set the environment

            from prefect_agentic.automations import CRASH_DETECTOR, CRASH_RETRY

            with temporary_settings({PREFECT_API_URL: stack.api_url}):
                for name in (CRASH_DETECTOR, CRASH_RETRY):
                    Automation.read(name=name).delete()
        stack.start_worker("w1", limit=1, warm=options.warm)
        assert stack.server is not None
        server_pid, worker_pid = stack.server.pid, stack.workers["w1"].pid
        sandbox = SandboxSettings().model_dump(mode="json")
        submitters: dict[str, Callable[[int], UUID]] = {
            "floor": lambda i: run_deployment(FLOOR_DEPLOYMENT, parameters={"key": f"{token}-{i}", "label": token},
                                              timeout=0).id,
            "ours": lambda i: submit_plan(plan_from_data(one_step_plan(f"bench-cpu-{token}-{i}"), "bench"),
                                          str(repo), parameters={"sandbox": sandbox}).id,
            "same": lambda i: run_deployment(SAME_WORK_DEPLOYMENT, parameters={
                "key": f"{token}-same-{i}", "label": token, "repo": str(repo)}, timeout=0).id,
        }
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            for i in range(-1, options.runs):  # run -1: untimed, the first of each kind
                for kind in (kinds if i % 2 == 0 else kinds[::-1]):
                    cost = charge(stack, lambda k=kind, n=i: submitters[k](n), server_pid, worker_pid)
                    if i >= 0:
                        spent[kind].append(cost)

    report(options, spent)


def report(options: argparse.Namespace, spent: dict[str, list[dict[str, float]]]) -> None:
    worker = "agentic worker (warm)" if options.warm else "prefect worker start"
    automations = "; crash automations deleted" if options.without_crash_automations else ""
    print(f"CPU-seconds per deployed run, median of {options.runs} runs of each kind, one at a time; {worker}; "
          f"PostgreSQL server{automations}; cores {os.cpu_count()}")
    medians = {kind: {part: statistics.median(r[part] for r in rows) for part in rows[0]}
               for kind, rows in spent.items()}
    same = "same" in medians
    print(f"  {'':10s} {'floor':>7s} {'ours':>7s} {'ours-floor':>10s}" + (f" {'same':>7s} {'ours-same':>10s}" if same else ""))
    for part in ("machine", *PARTS, "rest"):
        floor, ours = medians["floor"][part], medians["ours"][part]
        line = f"  {part:10s} {floor:7.2f} {ours:7.2f} {ours - floor:+10.2f}"
        if same:
            line += f" {medians['same'][part]:7.2f} {ours - medians['same'][part]:+10.2f}"
        print(line)
    ratio = medians["floor"]["machine"] / medians["ours"]["machine"]
    print(f"ratio floor/ours of machine CPU per run: {ratio:.2f}x (the CPU-bound bound on ours/floor throughput)")
    if same:
        print(f"ratio same/ours of machine CPU per run: {medians['same']['machine'] / medians['ours']['machine']:.2f}x "
              f"(what our code costs on top of the work)")


if __name__ == "__main__":
    main()
