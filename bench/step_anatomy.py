"""Where the time of a warm step goes: our parts of it, timed inside one chain run.

``bench/step_overhead.py`` says how much a warm step costs next to the Prefect
floor; this says what the difference is made of. It runs one plan of ``--steps``
chained warm steps (the same command as ``step_overhead.py``) on the embedded
API, with a timer around each part of a step (wrapped for this run only, the
code itself unchanged), and prints each part's median per step:

  * in the step's task: the workspace reset (``git checkout`` + ``git clean``,
    then the worktree handed to the sandbox uid), the reports directory, the
    command in the sandbox (``docker exec``, output capture, cgroup counters),
    the audit records, and the whole step body (``execute_step``);
  * between two steps, on the critical path of a chain: from one step's body
    ending to the scheduler taking it (Prefect finishing the task run), the
    scheduler's own work (the step's report and record, the next step's record
    and submission), and from submission to the next body starting (Prefect
    starting the task run);
  * for context, in the same process: the per-step time of a chain of floor
    tasks (``step_overhead.floor_chain_seconds``), and, outside any flow
    (before the chain), our warm sandbox running the command next to a plain ``exec_run``
    of it in the same container (interleaved), which is what our wrapping of a
    command costs.

Usage: ``python bench/step_anatomy.py [--steps 60]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker
import step_overhead as bench  # first: it sets Prefect's and our homes before Prefect is imported

import prefect_agentic.tasks.step as step_module
from prefect_agentic import executor, scheduler
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.record.audit import AuditLog
from prefect_agentic.sandbox.runner import LABEL_RUN, WarmContainer, open_sandbox
from prefect_agentic.settings import embedded_run_settings
from prefect_agentic.workspace import Workspace

PARTS: dict[str, list[float]] = {}
"""Part name -> the durations measured (seconds)."""
MARKS: list[tuple[float, str]] = []
"""(time, what happened) along the chain, for the gaps between steps."""


def timed_part(owner: Any, name: str, part: str, mark: str | None = None) -> None:
    """Wrap ``owner.name`` so each call's duration goes to ``PARTS[part]`` (and its start and end to MARKS)."""
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        if mark:
            MARKS.append((start, f"{mark} start"))
        try:
            return original(*args, **kwargs)
        finally:
            end = time.perf_counter()
            PARTS.setdefault(part, []).append(end - start)
            if mark:
                MARKS.append((end, f"{mark} end"))

    setattr(owner, name, wrapper)


def instrument() -> None:
    timed_part(Workspace, "_restore", "workspace reset (git checkout + clean, hand-over)")
    timed_part(Workspace, "prepare_reports", "reports directory")
    timed_part(WarmContainer, "run", "command in the sandbox (docker exec, capture, counters)")
    timed_part(AuditLog, "record", "audit records (one each; count a step beside it)")
    timed_part(executor, "execute_step", "step body (execute_step)", mark="body")
    step_module.execute_step = executor.execute_step  # the task calls it by the name it imported
    timed_part(scheduler.StepScheduler, "_finish", "scheduler: the step's report and record", mark="finish")
    timed_part(scheduler.StepScheduler, "_submit", "scheduler: the next step's record and submission",
               mark="submit")


def gaps() -> dict[str, list[float]]:
    """Between a body's end and the next body's start: Prefect's end of a task run, ours, Prefect's start."""
    found: dict[str, list[float]] = {"Prefect ends the task run (body end -> scheduler)": [],
                                     "Prefect starts the next task run (submitted -> body)": []}
    last: dict[str, float] = {}
    for moment, what in MARKS:
        if what == "finish start" and "body end" in last:
            found["Prefect ends the task run (body end -> scheduler)"].append(moment - last["body end"])
        if what == "body start" and "submit end" in last:
            found["Prefect starts the next task run (submitted -> body)"].append(moment - last["submit end"])
        last[what] = moment
    return found


def command_costs(settings: SandboxSettings, calls: int) -> tuple[float, float]:
    """Median seconds of the command run by our warm sandbox and by a plain ``exec_run``, interleaved."""
    workspace = bench._STATE / "anatomy-workspace"
    workspace.mkdir()
    owner = settings.workspace_owner()
    if owner is not None:
        os.chown(workspace, *owner)
    sandbox = open_sandbox(settings, workspace, "anatomy-commands")
    try:
        sandbox.run(bench.COMMAND, timeout=600)  # starts the container
        [container] = docker.from_env().containers.list(filters={"label": f"{LABEL_RUN}=anatomy-commands"})
        ours, plain = [], []
        for _ in range(calls):
            start = time.perf_counter()
            sandbox.run(bench.COMMAND, timeout=600)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            container.exec_run(bench.COMMAND, user=settings.effective_user())
            plain.append(time.perf_counter() - start)
        return statistics.median(ours), statistics.median(plain)
    finally:
        sandbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="warm steps in the chain (default 60)")
    steps = parser.parse_args().steps
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{steps} chained warm steps, command {' '.join(bench.COMMAND)!r}, embedded API")
    repo = bench.make_repo()
    settings = SandboxSettings(image=bench.IMAGE, mode="warm")
    bench.run(bench.chain_plan("anatomy-warm-up", 2, bench.COMMAND), repo, settings)  # imports, container, caches
    sandboxed, plain = command_costs(settings, steps)  # before the timers go in
    instrument()
    elapsed, report = bench.run(bench.chain_plan(f"anatomy-{steps}", steps, bench.COMMAND), repo, settings)
    if not report.ok:
        raise SystemExit("the chain did not complete")
    with bench.WarmContainer() as container:
        floor = bench.floor_chain_seconds(lambda: container.exec(bench.COMMAND), steps, "anatomy")
    print(f"{'ours, a step (whole chain / steps)':58s} {elapsed / steps * 1000:7.2f} ms")
    print(f"{'floor, a step (plain Prefect tasks, same command)':58s} {floor / steps * 1000:7.2f} ms")
    print(f"{'outside a flow: the command in our warm sandbox':58s} {sandboxed * 1000:7.2f} ms")
    print(f"{'outside a flow: plain exec_run in the same container':58s} {plain * 1000:7.2f} ms")
    print("median per call:")
    for part, durations in [*PARTS.items(), *gaps().items()]:
        print(f"  {part:56s} {statistics.median(durations) * 1000:7.2f} ms  "
              f"x{len(durations) / steps:.1f} a step")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    try:
        with embedded_run_settings():
            main()
    finally:
        bench.unmount_workspaces()
