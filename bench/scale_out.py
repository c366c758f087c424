"""Throughput of prefect-agentic on Prefect's distributed engine against a plain Prefect floor.

A Prefect server on PostgreSQL, ``run-plan/default`` deployed from a fresh
checkout, and next to it the floor ``scale-out-floor/floor``
(``bench/scale_out_floor.py``: a plain Prefect flow whose one task, configured
as our step tasks are, makes the docker calls of one default sandboxed step:
a container with networking off runs ``sleep 1`` and is removed), deployed
from the same checkout to the same pool; ``--workers`` process workers on
``agentic-process`` run both. ``--rounds`` interleaved rounds (the order
alternates: floor first, then ours first...), each a batch of ``--runs`` floor
flow runs submitted at once and waited for, and a batch of ``--runs`` one-step
plans (``sleep 1`` in the sandbox), after an untimed warm-up batch of floor runs
that fills every worker slot (with ``--warm`` it starts each worker's warm
process). Prints:
  * per batch: runs per minute, from the first flow run's creation to the last
    run's terminal state (server timestamps), and the machine's CPU while it
    ran (share busy, CPU-seconds per run; in the summary split into the
    server's process tree, PostgreSQL, the Docker engine and the rest: flow-run
    processes, containers, this bench); a round where any run of either batch
    did not complete is void;
  * the median runs per minute of each kind over the valid rounds and the
    median ratio ours/floor (issue 17's target: >= 0.9x); the median CPU per
    run of each kind and their ratio, which bounds the throughput ratio when
    both kinds keep the CPU busy (a kind below ~100% busy waits on something else);
  * where a run's time goes, per kind: start-up (Pending -> Running: the
    flow-run process, pull steps, flow load), running (Running -> terminal),
    created -> completed (with queueing behind the workers' slots);
  * for ours also the per-run overhead of going through a deployment against
    the same plan run by ``run_plan`` in this process on the same server;
  * the load average before and after.

``--warm`` runs both kinds on ``agentic worker`` (flow runs forked warm)
instead of ``prefect worker start``.

``--same-work`` adds a third kind to every round, the second floor
``scale-out-floor-same-work/same-work`` (``bench/scale_out_floor.py``): plain
Prefect, git and Docker doing, with the same commands and API calls, the work
one run of ours does around its second (size-limited workspace, clone, sandbox
slot, hardened container with capture, events, artifacts, and the crash
automations watching the run: it is tagged ``agentic`` as ours are), without
our code.
It splits the miss: ours/same-work is what our own code costs, same-work/floor
what that work costs in Prefect, git and Docker.

Needs what the scale-out test needs (``make setup``: Docker, the sandbox
image, PostgreSQL). Usage:
``python bench/scale_out.py [--runs 20] [--rounds 3] [--workers 2] [--warm] [--same-work]``.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import io
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
_STATE = Path(tempfile.mkdtemp(prefix="agentic-bench-scale-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_HOME", str(_STATE / "prefect"))
os.environ.setdefault("AGENTIC_HOME", str(_STATE / "agentic"))

import docker
import requests
from deploy_helpers import PrefectStack, free_port, postgres, postgres_database_url, wait_for_state
from machine_cpu import busy_fraction, by_part, cpu_times
from prefect import Flow
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from scale_out_floor import LABEL as FLOOR_LABEL

import prefect_agentic
from prefect_agentic.automations import RUN_TAG
from prefect_agentic.blocks import SandboxSettings
from prefect_agentic.flows.run_plan import run_plan
from prefect_agentic.plan.loader import plan_from_data
from prefect_agentic.submit import submit_plan

FLOOR_DEPLOYMENT = "scale-out-floor/floor"
SAME_WORK_DEPLOYMENT = "scale-out-floor-same-work/same-work"
TARGET = 0.9
"""Issue 17: our deployed runs per minute >= 0.9x the floor's."""
TERMINAL = {"Completed", "Failed", "Crashed", "Cancelled"}


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


def deploy_floor(stack: PrefectStack) -> None:
    """Deploy both floors of ``bench/scale_out_floor.py`` from the stack's checkout to ``agentic-process``.

    The same-work floor is tagged as our deployments are, so that the crash
    automations of ``agentic init`` watch its runs too (part of the work, priced
    by ``bench/server_ops.py``); the first floor is not.

    A local-directory source: the deployment's pull step sets the flow-run
    process's working directory to the checkout, where the entrypoint is loaded.
    """
    for function, name, tags in (("docker_floor", "floor", []), ("docker_floor_same_work", "same-work", [RUN_TAG])):
        floor = Flow.from_source(source=str(stack.checkout), entrypoint=f"bench/scale_out_floor.py:{function}")
        with contextlib.redirect_stdout(io.StringIO()):  # its table of deployments
            floor.deploy(name=name, work_pool_name="agentic-process", print_next_steps=False,  # type: ignore[union-attr]
                         ignore_warnings=True, tags=tags)


def compile_like_an_install(stack: PrefectStack) -> None:
    """Byte-compile the pack and the floors' checkout, as installing a wheel with pip does.

    ``make setup`` installs the pack editable, which leaves its modules uncompiled; where
    ``PYTHONDONTWRITEBYTECODE`` is set (as on these machines) every cold flow-run process would
    then compile about 70 of our modules from source, a cost no installed pack has, while
    Prefect, docker and git in site-packages were compiled when they were installed.
    """
    for directory in (Path(prefect_agentic.__file__).parent, stack.checkout / "bench"):
        compileall.compile_dir(directory, quiet=1)


@contextlib.contextmanager
def deployed_stack(token: str, database_prefix: str) -> Iterator[PrefectStack]:
    """A Prefect server on a fresh PostgreSQL database, ``run-plan/default`` and the floors deployed.

    Every bench of the scale-out family measures on this same stack. On the way
    out (a finished bench, an error or Ctrl-C) it stops the workers and the
    server, drops the database, removes the floor containers labelled ``token``
    and the bench's state directory (the checkout, workspaces and results, ~300
    MB), so a bench leaves nothing behind to load the next one.
    """
    database = f"{database_prefix}_{token}"
    postgres(f"CREATE DATABASE {database}")
    stack = PrefectStack(_STATE / "stack", free_port(),
                         extra_env={"PREFECT_API_DATABASE_CONNECTION_URL": postgres_database_url(database)})
    try:
        stack.start_server()
        for command in (("agentic", "init"), ("prefect", "--no-prompt", "deploy", "--name", "run-plan/default")):
            done = stack.run(*command)
            assert done.returncode == 0, done.stdout + done.stderr
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            deploy_floor(stack)
        yield stack
    finally:
        stack.stop_workers()
        stack.stop_server()
        postgres(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        remove_floor_containers(token)
        shutil.rmtree(_STATE, ignore_errors=True)


@dataclass
class Batch:
    """``--runs`` flow runs of one kind, submitted at once, each in a terminal state."""

    kind: str
    runs: list[Any]
    states: list[list[Any]]
    in_tasks: list[float]
    """Per flow run: seconds its task runs (the one step) were Running."""
    containers: int | None = None
    """Containers the batch created (counted for the floor only: ours share a label with other runs)."""
    busy: float = 0.0
    """Share of the machine's CPU time that was busy while the batch ran (all cores)."""
    cpu_seconds: float = 0.0
    """The machine's busy CPU-seconds while the batch ran."""
    parts: dict[str, float] = field(default_factory=dict)
    """Of them: the server's process tree, PostgreSQL, the Docker engine, and the rest (flow runs, containers...)."""

    @property
    def completed(self) -> int:
        return sum(1 for r in self.runs if r.state.name == "Completed")

    @property
    def complete(self) -> bool:
        return self.completed == len(self.runs)

    @property
    def seconds(self) -> float:
        """First flow run created -> last terminal state."""
        first = min(r.created for r in self.runs)
        last = max(r.state.timestamp for r in self.runs)
        return (last - first).total_seconds()

    @property
    def per_minute(self) -> float:
        return self.completed / self.seconds * 60

    def start_up(self) -> list[float]:
        return [_start_up_seconds(states) for states in self.states]

    def running(self) -> list[float]:
        return [r.total_run_time.total_seconds() for r in self.runs]

    def step_task(self) -> list[float]:
        return self.in_tasks

    def latency(self) -> list[float]:
        return [(r.state.timestamp - r.expected_start_time).total_seconds() for r in self.runs]

    def line(self) -> str:
        made = "" if self.containers is None else f"; {self.containers} containers created"
        return (f"{self.kind:5s} {self.completed:3d}/{len(self.runs)} completed {self.per_minute:7.1f} "
                f"runs/minute ({self.seconds:6.1f} s, CPU {100 * self.busy:3.0f}% busy, "
                f"{self.cpu_seconds / len(self.runs):4.2f} CPU-s a run){made}")


def run_batch(stack: PrefectStack, kind: str, submit: Callable[[int], UUID], runs: int) -> Batch:
    before, parts_before = cpu_times(), by_part(stack.server.pid)
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        ids = [submit(i) for i in range(runs)]
    finished = [wait_for_state(stack, i, TERMINAL, timeout=1800) for i in ids]
    after, parts_after = cpu_times(), by_part(stack.server.pid)
    with stack.client() as client:
        states = [client.read_flow_run_states(i) for i in ids]
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                                          limit=10 * runs)
    in_tasks = {i: 0.0 for i in ids}
    for task_run in task_runs:
        in_tasks[task_run.flow_run_id] += task_run.total_run_time.total_seconds()
    cpu_seconds = (after[0] - before[0]) / os.sysconf("SC_CLK_TCK")
    parts = {name: parts_after[name] - parts_before[name] for name in ("server", "postgres", "engine")}
    parts["rest"] = cpu_seconds - sum(parts.values())
    return Batch(kind, finished, states, [in_tasks[i] for i in ids], busy=busy_fraction(before, after),
                 cpu_seconds=cpu_seconds, parts=parts)


class ContainersCreated:
    """Counts, from now until ``stop``, the containers created with this bench's floor label.

    Listened to live: the engine keeps only its last events for a later
    ``since`` query, and other work on this engine makes many.
    """

    def __init__(self, token: str) -> None:
        self.count = 0
        self.stream = docker.from_env().events(decode=True, filters={
            "type": "container", "event": "create", "label": f"{FLOOR_LABEL}={token}"})
        self.thread = threading.Thread(target=self._pump, name="floor-containers", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for _ in self.stream:
                self.count += 1
        except (OSError, ValueError, requests.RequestException):
            pass  # the stream was closed by stop()

    def stop(self) -> int:
        time.sleep(1)  # the last create event is older than its run's Completed state; let it arrive
        self.stream.close()
        self.thread.join(timeout=10)
        return self.count


def remove_floor_containers(token: str) -> None:
    """Remove whatever floor container of this bench is left (none, unless a run was killed)."""
    for container in docker.from_env().containers.list(all=True, filters={"label": f"{FLOOR_LABEL}={token}"}):
        container.remove(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="flow runs in a batch")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (a floor batch and ours)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=4, help="flow runs per worker at once")
    parser.add_argument("--warm", action="store_true", help="`agentic worker` (warm fork) for both kinds")
    parser.add_argument("--same-work", action="store_true",
                        help="a third kind a round: plain Prefect doing the work of ours without our code")
    options = parser.parse_args()
    repo = make_repo()
    token = secrets.token_hex(4)
    load_before = os.getloadavg()

    rounds: list[tuple[Batch, Batch]] = []  # (floor, ours)
    same_work: list[Batch] = []  # with --same-work, one a round
    with deployed_stack(token, "agentic_bench") as stack:
        compile_like_an_install(stack)
        for i in range(options.workers):
            stack.start_worker(f"w{i + 1}", limit=options.limit, warm=options.warm)
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            baseline = in_process_seconds(repo)
        sandbox = SandboxSettings().model_dump(mode="json")

        def floor(r: int) -> Callable[[int], UUID]:
            return lambda i: run_deployment(FLOOR_DEPLOYMENT, parameters={"key": f"{token}-r{r}-{i:03d}",
                                                                          "label": token}, timeout=0).id

        def same(r: int) -> Callable[[int], UUID]:
            return lambda i: run_deployment(SAME_WORK_DEPLOYMENT, parameters={
                "key": f"{token}-r{r}-{i:03d}", "label": token, "repo": str(repo)}, timeout=0).id

        def ours(r: int) -> Callable[[int], UUID]:
            return lambda i: submit_plan(plan_from_data(one_step_plan(f"bench-scale-{token}-r{r}-{i:03d}"), "bench"),
                                         str(repo), parameters={"sandbox": sandbox}).id

        warm_up = run_batch(stack, "floor", floor(-1), options.workers * options.limit)
        print(f"warm-up (untimed, every worker slot busy): {warm_up.completed}/{len(warm_up.runs)} floor runs "
              f"completed", flush=True)
        for r in range(options.rounds):
            batches: dict[str, Batch] = {}
            for kind in _order(r, options.same_work):
                if kind == "floor":
                    created = ContainersCreated(token)
                    batches[kind] = run_batch(stack, kind, floor(r), options.runs)
                    batches[kind].containers = created.stop()
                else:
                    batches[kind] = run_batch(stack, kind, {"ours": ours, "same": same}[kind](r), options.runs)
            rounds.append((batches["floor"], batches["ours"]))
            if "same" in batches:
                same_work.append(batches["same"])
            void = "" if all(b.complete for b in batches.values()) else "   VOID (a run did not complete)"
            lines = "; ".join(batches[kind].line() for kind in ("floor", "ours", "same") if kind in batches)
            print(f"round {r + 1}: {lines}{void}", flush=True)

    report(options, rounds, baseline, load_before)
    if same_work:
        report_same_work(rounds, same_work)


def _order(r: int, same_work: bool) -> tuple[str, ...]:
    """The kinds of round ``r``: each kind goes first as often as the others."""
    kinds = ("floor", "ours", "same") if same_work else ("floor", "ours")
    return kinds[r % len(kinds):] + kinds[:r % len(kinds)]


def report_same_work(rounds: list[tuple[Batch, Batch]], same_work: list[Batch]) -> None:
    """Ours against plain Prefect doing the same work, and that work against the floor (valid rounds)."""
    valid = [(f, o, s) for (f, o), s in zip(rounds, same_work, strict=True) if f.complete and o.complete and s.complete]
    if not valid:
        print("same work                  VOID (no round where every run of the three kinds completed)")
        return
    rate = statistics.median(s.per_minute for _, _, s in valid)
    print(f"throughput, same work      {rate:8.1f} runs/minute (median; plain Prefect doing the work of ours, "
          f"{len(valid)} valid rounds)")
    print(f"ratio ours/same work       {statistics.median(o.per_minute / s.per_minute for _, o, s in valid):8.2f}x"
          "  (median of rounds: what our own code costs)")
    print(f"ratio same work/floor      {statistics.median(s.per_minute / f.per_minute for f, _, s in valid):8.2f}x"
          "  (median of rounds: what the work costs in Prefect, git and Docker)")
    cpu = statistics.median(s.cpu_seconds / len(s.runs) for _, _, s in valid)
    ours_cpu = statistics.median(o.cpu_seconds / len(o.runs) for _, o, _ in valid)
    print(f"machine CPU a run, same    {cpu:8.2f} s (median; busy "
          f"{100 * statistics.median(s.busy for _, _, s in valid):.0f}%); same/ours {cpu / ours_cpu:.2f}x")
    for name in ("server", "postgres", "engine", "rest"):
        s_part = statistics.median(s.parts[name] / len(s.runs) for _, _, s in valid)
        o_part = statistics.median(o.parts[name] / len(o.runs) for _, o, _ in valid)
        print(f"  of it, {name:18s} {s_part:6.2f} s (ours {o_part:.2f} s, {o_part - s_part:+.2f} s)")


def report(options: argparse.Namespace, rounds: list[tuple[Batch, Batch]], baseline: float,
           load_before: tuple[float, float, float]) -> None:
    valid = [(f, o) for f, o in rounds if f.complete and o.complete]
    workers = "agentic worker (warm)" if options.warm else "prefect worker start"
    print(f"{options.runs} flow runs a batch, {options.rounds} rounds (floor and ours interleaved), "
          f"{options.workers} x `{workers}` --limit {options.limit}, PostgreSQL server; cores {os.cpu_count()}")
    print(f"load average before: {_load(load_before)}; after: {_load(os.getloadavg())}")
    print(f"valid rounds {len(valid)} of {len(rounds)}; completed: floor "
          f"{sum(f.completed for f, _ in rounds)}/{options.runs * len(rounds)}, ours "
          f"{sum(o.completed for _, o in rounds)}/{options.runs * len(rounds)}")
    if not valid:
        print("throughput                 VOID (no round where every run completed)")
        return
    floor_rate = statistics.median(f.per_minute for f, _ in valid)
    ours_rate = statistics.median(o.per_minute for _, o in valid)
    ratio = statistics.median(o.per_minute / f.per_minute for f, o in valid)
    print(f"throughput, floor          {floor_rate:8.1f} runs/minute (median; plain Prefect flow, one task: "
          f"docker create/start/wait/remove)")
    print(f"throughput, ours           {ours_rate:8.1f} runs/minute (median; run-plan/default, one-step plan)")
    print(f"ratio ours/floor           {ratio:8.2f}x  (median of rounds; target >= {TARGET}x: "
          f"{'PASS' if ratio >= TARGET else 'MISS'})")
    floor_cpu = statistics.median(f.cpu_seconds / len(f.runs) for f, _ in valid)
    ours_cpu = statistics.median(o.cpu_seconds / len(o.runs) for _, o in valid)
    print(f"machine CPU a run, floor   {floor_cpu:8.2f} s (median; busy {100 * statistics.median(f.busy for f, _ in valid):.0f}%)"
          f"; ours {ours_cpu:.2f} s (busy {100 * statistics.median(o.busy for _, o in valid):.0f}%); "
          f"floor/ours {floor_cpu / ours_cpu:.2f}x (the bound on the ratio when both are CPU-bound)")
    for name in ("server", "postgres", "engine", "rest"):
        f_part = statistics.median(f.parts[name] / len(f.runs) for f, _ in valid)
        o_part = statistics.median(o.parts[name] / len(o.runs) for _, o in valid)
        print(f"  of it, {name:18s} {f_part:6.2f} s {o_part:6.2f} s   ({o_part - f_part:+.2f} s)")
    print("per run, mean over valid rounds          floor     ours")
    for name, part in (("start-up (Pending -> Running)", Batch.start_up),
                       ("running (Running -> Completed)", Batch.running),
                       ("  of it, the step task Running", Batch.step_task),
                       ("created -> completed (queueing)", Batch.latency)):
        f_mean = statistics.mean(x for f, _ in valid for x in part(f))
        o_mean = statistics.mean(x for _, o in valid for x in part(o))
        print(f"  {name:36s} {f_mean:6.2f} s {o_mean:6.2f} s   ({o_mean - f_mean:+.2f} s)")
    per_run = statistics.mean(x for _, o in valid for x in o.start_up()) + \
        statistics.mean(x for _, o in valid for x in o.running())
    print(f"in-process run_plan        {baseline:8.2f} s   (same plan, same server, this process); ours "
          f"deployed per run {per_run:.2f} s, ratio {per_run / baseline:4.2f}x, overhead {per_run - baseline:+.2f} s")


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def _start_up_seconds(states: list) -> float:  # type: ignore[type-arg]
    """From the run's first Pending state to its first Running state."""
    pending = next(s.timestamp for s in states if s.name == "Pending")
    running = next(s.timestamp for s in states if s.name == "Running")
    return (running - pending).total_seconds()


if __name__ == "__main__":
    main()
