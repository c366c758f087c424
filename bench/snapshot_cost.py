"""Snapshot cost and memory of long plans, measured on this machine.

Two parts:

* **Snapshot cost.** A repository of 10 000 files (100 directories of 100
  small files), cloned twice: once as a run workspace (``Workspace.prepare``,
  as ``agentic run`` makes it) and once as a plain clone. Each round changes
  the same 3 files in both, then times, interleaved (ours, raw, ours, raw...),
  ``Workspace.snapshot`` (the embedded-repository check, ``git add --all``, the
  tree comparison, ``commit-tree`` and the refs) against a raw
  ``git add -A && git commit`` of the same change. Prints the medians and the
  median of the per-round ratios (target <= 2x), and what the next step's
  checkout of that snapshot costs (``git checkout`` + ``git clean``, then the
  worktree handed to the sandbox uid when the bench runs as root, as in a run),
  and, in a fresh workspace, the resets of a chain of steps that only read
  (such steps take no snapshot).
* **Memory of long plans** (``--rss``): peak RSS of a process that runs one
  plan of N chained steps (each ``true`` in one warm container, so the run is
  mostly orchestration) on the embedded API, for N = 10, 100, 1000 (or the
  counts given). Each plan runs in a fresh child process, so one peak never
  hides another. Memory should stay flat: the figure per extra step is printed.
  With ``--rss-floor``, the same for a chain of plain Prefect tasks with
  persisted results and a no-op body: Prefect's own growth per task run.

Usage: ``python bench/snapshot_cost.py [--rounds N] [--rss [10 100 1000]] [--rss-floor]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")

FILES_PER_DIR, DIRS, CHANGED = 100, 100, 3
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
TARGET = 2.0


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def make_source(root: Path) -> Path:
    source = root / "source"
    for d in range(DIRS):
        folder = source / f"pkg{d:03d}"
        folder.mkdir(parents=True)
        for f in range(FILES_PER_DIR):
            (folder / f"mod{f:03d}.py").write_text(f"VALUE = {d * FILES_PER_DIR + f}\n")
    git(source, "init", "-q", "-b", "main")
    git(source, "add", "-A")
    git(source, "commit", "-qm", "10 000 files")
    return source


def change(worktree: Path, round_no: int) -> None:
    """The same 3 files changed in any worktree (round ``round_no``)."""
    for i in range(CHANGED):
        path = worktree / f"pkg{(round_no * 7 + i * 31) % DIRS:03d}" / f"mod{i:03d}.py"
        path.write_text(f"VALUE = {round_no}  # round {round_no}, file {i}\n")


def snapshot_rounds(rounds: int) -> None:
    from prefect_agentic.blocks.sandbox_settings import SandboxSettings
    from prefect_agentic.workspace import Workspace, resolve_base

    root = Path(tempfile.mkdtemp(prefix="agentic-snapshot-bench-"))
    try:
        source = make_source(root)
        base = resolve_base(source, "HEAD")
        # Handed to the sandbox's uid, as a run's workspace is when the host side runs as root.
        owner = SandboxSettings().workspace_owner()
        workspace = Workspace.prepare(source, base, root / "workspace", owner=owner)
        workspace._restore(base)
        plain = root / "plain"
        git(root, "clone", "-q", str(source), str(plain))
        ours, raw, ratios, resets = [], [], [], []
        for n in range(rounds + 1):  # round 0 warms the page cache and git's index
            change(workspace.path, n)
            start = time.perf_counter()
            workspace.snapshot(f"bench round {n}", f"bench/{n}")
            t_ours = time.perf_counter() - start
            change(plain, n)
            start = time.perf_counter()
            git(plain, "add", "-A")
            git(plain, "commit", "-qm", f"bench round {n}")
            t_raw = time.perf_counter() - start
            start = time.perf_counter()
            workspace._restore(workspace.repo.head.commit.hexsha)  # what the next step's checkout does
            t_reset = time.perf_counter() - start
            if n:
                ours.append(t_ours), raw.append(t_raw), ratios.append(t_ours / t_raw)
                resets.append(t_reset)
        ratio = statistics.median(ratios)
        print(f"snapshot of {CHANGED} changed files in {DIRS * FILES_PER_DIR} ({rounds} interleaved rounds)")
        print(f"  ours (Workspace.snapshot)       {statistics.median(ours) * 1000:8.1f} ms")
        print(f"  raw git add -A && git commit    {statistics.median(raw) * 1000:8.1f} ms")
        print(f"  ratio {ratio:5.2f}x  (target <= {TARGET}x: {'PASS' if ratio <= TARGET else 'MISS'})")
        print(f"  the next step's workspace reset (git checkout + git clean, hand-over) {statistics.median(resets) * 1000:8.1f} ms")
        # A fresh run's workspace, then a chain of steps that only read: each takes the
        # worktree again (a reset) and none takes a snapshot.
        readers = Workspace.prepare(source, base, root / "readers", owner=owner)
        chain = []
        for _ in range(rounds + 1):
            start = time.perf_counter()
            readers._restore(base)
            chain.append(time.perf_counter() - start)
        print(f"  a fresh workspace's first reset (everything checked out and handed over) {chain[0] * 1000:8.1f} ms")
        print(f"  then {rounds} steps that only read, a reset each: median {statistics.median(chain[1:]) * 1000:8.1f} ms, "
              f"max {max(chain[1:]) * 1000:8.1f} ms")
        print(f"  (worktree handed to uid:gid {owner} as in a run)" if owner else
              "  (not run as root: the worktree is not handed to another uid)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def rss_child(steps: int) -> None:
    """Run one plan of ``steps`` chained ``true`` steps; print this process's peak RSS and the time."""
    state = Path(tempfile.mkdtemp(prefix="agentic-rss-bench-"))
    os.environ.setdefault("PREFECT_HOME", str(state / "prefect"))
    os.environ.setdefault("AGENTIC_HOME", str(state / "agentic"))
    from prefect_agentic.blocks.sandbox_settings import SandboxSettings
    from prefect_agentic.flows.run_plan import run_plan
    from prefect_agentic.plan.loader import plan_from_data
    from prefect_agentic.settings import embedded_run_settings
    from prefect_agentic.workspace import unmount_size_limited

    repo = state / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("bench\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "bench")
    plan_steps = []
    for i in range(steps):
        step = {"id": f"s{i:04d}", "tool": "shell", "args": {"command": "true"}}
        if i:
            step["depends_on"] = [f"s{i - 1:04d}"]
        plan_steps.append(step)
    plan = plan_from_data({"id": f"rss-{steps}", "goal": "memory", "steps": plan_steps}, source="bench")
    image = os.environ.get("AGENTIC_SANDBOX_IMAGE", "prefect-agentic/sandbox:2")
    try:
        with embedded_run_settings():
            start = time.perf_counter()
            report = run_plan(plan=plan, repo=str(repo), sandbox=SandboxSettings(image=image, mode="warm"))
            elapsed = time.perf_counter() - start
        assert report.ok and len(report.steps) == steps
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{steps} {peak_mib:.1f} {elapsed:.1f}")
    finally:
        for path in (state / "agentic" / "workspaces").glob("*"):
            unmount_size_limited(path)
        shutil.rmtree(state, ignore_errors=True)


def rss_floor_child(tasks: int) -> None:
    """Prefect's own memory floor: ``tasks`` chained plain tasks (persisted JSON results, no-op body)."""
    state = Path(tempfile.mkdtemp(prefix="agentic-rss-floor-"))
    os.environ.setdefault("PREFECT_HOME", str(state / "prefect"))
    from prefect import flow, task

    from prefect_agentic.settings import embedded_run_settings

    @task(persist_result=True, result_serializer="json", retries=1,
          cache_key_fn=lambda _ctx, p: f"rss-floor-{p['key']}")
    def step(key: str, previous: dict | None = None) -> dict:
        return {"key": key, "snapshot": "0" * 40}

    @flow(name="rss-floor")
    def chain() -> None:
        previous = None
        for i in range(tasks):
            previous = step.submit(f"{i}", previous)
        previous.result()

    try:
        with embedded_run_settings():
            start = time.perf_counter()
            chain()
            elapsed = time.perf_counter() - start
        print(f"{tasks} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} {elapsed:.1f}")
    finally:
        shutil.rmtree(state, ignore_errors=True)


def rss_table(counts: list[int], flag: str, what: str) -> None:
    print(f"peak RSS of a process running {what}, embedded API")
    rows = []
    for steps in counts:
        out = subprocess.run([sys.executable, __file__, flag, str(steps)], check=True,
                             capture_output=True, text=True).stdout.split()
        _, peak, elapsed = int(out[-3]), float(out[-2]), float(out[-1])
        rows.append((steps, peak))
        print(f"  {steps:5d} steps  peak RSS {peak:7.1f} MiB  ({elapsed:6.1f} s)")
    (n0, m0), (n1, m1) = rows[0], rows[-1]
    if n1 > n0:
        print(f"  growth {(m1 - m0) / (n1 - n0) * 1024:.1f} KiB per extra step "
              f"({n0} -> {n1} steps: {m0:.1f} -> {m1:.1f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved snapshot rounds")
    parser.add_argument("--rss", type=int, nargs="*", help="also peak RSS for these step counts "
                        "(default 10 100 1000)")
    parser.add_argument("--rss-floor", action="store_true",
                        help="with --rss: also the same for a chain of plain Prefect tasks (Prefect's floor)")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rss-floor-child", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.rss_child:
        rss_child(options.rss_child)
        return
    if options.rss_floor_child:
        rss_floor_child(options.rss_floor_child)
        return
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    snapshot_rounds(options.rounds)
    if options.rss is not None:
        counts = options.rss or [10, 100, 1000]
        rss_table(counts, "--rss-child", "one plan of N chained warm steps (each 'true')")
        if options.rss_floor:
            rss_table(counts, "--rss-floor-child", "N chained plain Prefect tasks (no-op body)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
