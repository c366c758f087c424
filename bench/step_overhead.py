"""Step overhead of prefect-agentic against Prefect's own floor, measured in one process.

Prints issue 17's ratios, each the MEDIAN over interleaved rounds (floor, ours,
floor, ours...), so a change in the machine's load hits both alike:

  * warm step vs floor: our per-step latency with one warm container per run,
    against a chain of plain Prefect tasks configured as our step tasks are
    (persisted JSON result, a retry, our own cache key, the same tags) whose
    body is only the same ``docker exec`` (docker SDK) into a running container
    (target <= 1.10x); with ``--only warm_same``, ours also against a floor
    whose task does, around the same ``docker exec``, the work our warm step
    does around its command, with git and files and without our code
    (``SameWork``: reset a clone to the snapshot with ``git checkout`` and
    ``git clean`` and hand it to the sandbox uid, five hash-chained audit
    lines with one fsync, the command under ``timeout`` with its output
    streamed and capped and the cgroup counters read around it, a report
    file): that splits the warm ratio into our code and the work;
  * container-per-step vs floor: the same with a container per step against
    floor tasks doing ``docker run --rm`` (target <= 1.05x); with ``--only
    per_step_slot``, on a server, the same twice more: ours without the
    sandbox slot (``concurrency_limit=None``) against that floor, and ours
    against a floor that holds a slot of a global concurrency limit through
    Prefect's own ``concurrency()``, as each of our steps does; with ``--only
    per_step_same``, against a floor that also does our step's work around a
    container started as our per-step sandbox starts it (``SameWork``);
  * cached step vs cached plain task: a chain run once, then again from the
    cache, ours (``run-plan``) against the floor's (target <= 1.3x);
  * 16 x 1 s steps at 8: a plan of 16 independent ``sleep 1`` steps at
    concurrency 8 against 16 floor tasks doing ``docker exec ... sleep 1``,
    8 at once (target <= 1.10x);
  * the same 16 x 1 s when the floor starts its container: the floor flow also
    starts the container it execs into and removes it at the end, as a whole
    run of ours does (start-up and clean-up that the previous floor leaves
    out; not a target, it shows what our run adds beyond that); with ``--only
    parallel_cold_slot``, on a server, a cold floor that also holds a slot of a
    global concurrency limit (Prefect's ``concurrency()``) while its container
    lives, as our warm run holds a slot of the sandbox limit; with ``--only
    parallel_same``, a cold floor that also does the work a run of ours does
    once (``RunWork``: the size-limited workspace mounted and reset, the image
    inspected, the run renamed, its artifacts and events, the unmount) and, in
    each task, the records and the command's wrapping of our steps (and, on a
    server, holds the slot);
  * 2-second stalls: API calls Prefect's client retried after a 503 (its first
    retry waits 2 s); with ``--why-stalls`` the embedded server prints each
    statement SQLite refused.
    A round whose floor stalled is void (left out of the median); stalls in
    our runs count against us.

"Per-step latency" is the marginal cost of one more step in a chain:
(time of N+1 steps - time of 1 step) / N, so a flow's fixed start-up cost is
not spread over its steps. Before each timed flow run the bench waits 0.5 s
(2 s before a cached one; untimed), so a run starts on a quiet API as a new
``agentic run`` does.

Runs use the embedded API's settings exactly as ``agentic run`` does
(``prefect_agentic.settings.embedded_run_settings``), or the server at
``PREFECT_API_URL`` when set. On a server, flow-run heartbeats are turned off
for every run of the bench, floors and ours alike: Prefect 3.9's heartbeat
thread sleeps in whole seconds and is joined when a flow run ends, so with
heartbeats on every flow run lasts a whole number of seconds past its start
and a chain's time moves in one-second jumps (``bench/heartbeat_join.py``
measures that wait).

Options: ``--raw`` also prints raw ``docker exec``/``docker run`` (CLI, SDK);
``--resume`` the 100-step resume ratio; ``--slot`` the sandbox slot's cost on
a temporary SQLite server; ``--runtimes`` only our per-step latency under runc
and gVisor (``SandboxSettings.runtime="runsc"``), both sandbox modes;
``--chain N`` longer chains (less noise in the marginal cost); ``--per-round``
each round's ratio under the median.

Usage: ``python bench/step_overhead.py [--quick] [--rounds N] [--chain N] [--per-round] [--only ...] [--raw]
[--resume] [--slot] [--runtimes]``
(``make bench``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Self, TypeVar

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")  # the resume part fails a step on purpose
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # as agentic sets it: a fresh database migrates first
if "--why-stalls" in sys.argv:  # the embedded server (a subprocess) logs each statement SQLite refused
    os.environ["PREFECT_API_LOG_RETRYABLE_ERRORS"] = "true"
_STATE = Path(tempfile.mkdtemp(prefix="agentic-bench-"))
os.environ.setdefault("PREFECT_HOME", str(_STATE / "prefect"))
os.environ.setdefault("AGENTIC_HOME", str(_STATE / "agentic"))

import docker
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.events import emit_event
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from scale_out_floor import hardened_container, make_workspace_image

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.concurrency import ensure_limit
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.flows.run_plan import run_plan
from prefect_agentic.plan.loader import plan_from_data
from prefect_agentic.report import RunReport
from prefect_agentic.sandbox.limits import read_counters, task_count
from prefect_agentic.settings import embedded_run_settings, uses_embedded_api
from prefect_agentic.tasks.step import step_tags
from prefect_agentic.workspace import NEUTRAL_ATTRIBUTES

IMAGE = os.environ.get("AGENTIC_SANDBOX_IMAGE", "prefect-agentic/sandbox:2")
COMMAND = ["python3", "-c", "print(sum(range(200000)))"]
"""A small real command (an interpreter start and a little work, ~50 ms)."""

QUIET_S = float(os.environ.get("BENCH_QUIET_S", "0.5"))
"""Untimed wait before each timed flow run (``quiet_api``)."""
CACHED_QUIET_S = 2.0
"""The same before a cached run: after a cached chain the server records its task states for longer."""
FLOOR_SLOT_LIMIT = "bench-floor-sandboxes"
"""The global concurrency limit the slotted floor holds a slot of (created by the bench, size 50)."""
COMPARISONS = ["warm", "warm_same", "per_step", "per_step_slot", "cached", "parallel", "parallel_cold",
               "parallel_cold_slot", "parallel_same", "per_step_same"]
"""What ``--only`` can name (``warm_same``, ``per_step_same``, ``parallel_same``; ``per_step_slot`` and ``parallel_cold_slot``, on a server)."""
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
"""git without the user's and the system's config, for the same-work floor (``SameWork``)."""
TARGETS = {"warm": 1.10, "per_step": 1.05, "cached": 1.3, "parallel": 1.10}
"""Issue 17: ratios against the Prefect floor in the same bench run."""


class RetryCounter(logging.Handler):
    """Counts the API calls Prefect's client retried after a 503 (it logs each at DEBUG).

    Each is a stall: the client waits 2 s before the retry.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retryable status code 503" in record.getMessage():
            self.count += 1

    def install(self) -> RetryCounter:
        client_logger = logging.getLogger("prefect.client")
        client_logger.setLevel(logging.DEBUG)
        client_logger.propagate = False  # counted here, not printed
        client_logger.addHandler(self)
        return self


RETRIES = RetryCounter()
T = TypeVar("T")


def counting_retries(fn: Callable[[], T]) -> tuple[T, int]:
    """``fn()`` and the number of 503 retries during it."""
    before = RETRIES.count
    value = fn()
    return value, RETRIES.count - before


def make_repo() -> Path:
    repo = _STATE / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("bench\n")
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
                  "commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    return repo


def quiet_api(seconds: float | None = None) -> None:
    """Let the API finish recording the flow run before (untimed), as a new ``agentic run`` process finds it.

    Back to back, a flow run's creation races the server still writing the
    last run's task states, and SQLite refuses it (a 2 s stall, counted).
    """
    time.sleep(QUIET_S if seconds is None else seconds)


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def raw_exec_latency(repeats: int) -> tuple[float, float]:
    """``docker exec`` of COMMAND in a running container: (CLI, SDK) median seconds.

    The SDK figure (docker-py over the engine's socket, as our sandbox talks to
    it) is the stricter baseline: it lacks the CLI's own start-up time.
    """
    client = docker.from_env()
    container = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True, remove=True,
                                      network_mode="none")
    try:
        cli = timed(lambda: subprocess.run(["docker", "exec", container.id, *COMMAND], check=True,
                                           capture_output=True), repeats)
        sdk = timed(lambda: _check(container.exec_run(COMMAND).exit_code), repeats)
        return cli, sdk
    finally:
        container.remove(force=True)


def raw_run_latency(repeats: int) -> tuple[float, float]:
    """``docker run --rm`` of COMMAND: (CLI, SDK) median seconds."""
    client = docker.from_env()
    cli = timed(lambda: subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE,
                                        *COMMAND], check=True, capture_output=True), repeats)
    sdk = timed(lambda: client.containers.run(IMAGE, COMMAND, remove=True, network_mode="none"),
                repeats)
    return cli, sdk


def _check(exit_code: int | None) -> None:
    if exit_code != 0:
        raise SystemExit(f"bench command failed in the container (exit {exit_code})")


def chain_plan(plan_id: str, length: int, command: list[str], fail_at: int | None = None) -> dict:
    """``length`` shell steps, each depending on the one before."""
    steps = []
    for i in range(1, length + 1):
        cmd: str | list[str] = command
        if i == fail_at:
            cmd = 'test "$BENCH_GO" = 1'
        step = {"id": f"s{i:03d}", "tool": "shell", "args": {"command": cmd}}
        if i > 1:
            step["depends_on"] = [f"s{i - 1:03d}"]
        steps.append(step)
    return {"id": plan_id, "goal": f"{length} chained steps", "steps": steps}


def run(plan: dict, repo: Path, settings: SandboxSettings, *, fresh: bool = True,
        concurrency: int = 4, quiet: float | None = None) -> tuple[float, RunReport]:
    flow = run_plan.with_options(task_runner=ThreadPoolTaskRunner(max_workers=concurrency))
    quiet_api(quiet)
    start = time.perf_counter()
    state = flow(plan=plan_from_data(plan, source="bench"), repo=str(repo), sandbox=settings,
                 fresh=fresh, return_state=True)
    elapsed = time.perf_counter() - start
    outcome = state.result(raise_on_failure=False)
    report = outcome.report if isinstance(outcome, PlanRunFailed) else outcome
    if not isinstance(report, RunReport):
        raise SystemExit(f"bench run did not produce a report: {outcome!r}")
    return elapsed, report


def per_step_latency(mode: str, repo: Path, chain: int, repeats: int, *, slot: bool = True,
                     tag: str = "", runtime: str = "runc") -> float:
    """Marginal cost of a step; ``slot=False`` runs without the global sandbox concurrency limit."""
    settings = SandboxSettings(image=IMAGE, mode=mode, runtime=runtime)
    tag += "" if runtime == "runc" else f"-{runtime}"
    if not slot:
        settings.concurrency_limit = None
    tag += "" if slot else "-noslot"
    one = chain_plan(f"bench-{mode}{tag}-1", 1, COMMAND)
    many = chain_plan(f"bench-{mode}{tag}-{chain + 1}", chain + 1, COMMAND)
    t_one = timed(lambda: run(one, repo, settings), repeats)
    t_many = timed(lambda: run(many, repo, settings), repeats)
    return (t_many - t_one) / chain


def floor_task(op: Callable[[], object]) -> Callable[..., object]:
    """A plain Prefect task configured as ``tasks.step.step_task`` configures ours, doing ``op``.

    Same persisted JSON result, a retry, our own cache key, and the tags ours
    get (``step_tags``: none unless a tag concurrency limit exists).
    """

    @task(persist_result=True, result_serializer="json", tags=step_tags("bench-floor", "shell"),
          retries=1, cache_key_fn=lambda _ctx, p: f"bench-floor-{p['key']}")
    def step(key: str, previous: dict | None = None) -> dict:
        op()
        return {"key": key, "snapshot": "0" * 40}

    return step


def floor_chain_seconds(op: Callable[[], object], length: int, tag: str, *, fresh: bool = True,
                        quiet: float | None = None) -> float:
    """Wall time of a flow running ``length`` chained floor tasks (``fresh``: ignore the cache)."""
    step = floor_task(op)
    if fresh:
        step = step.with_options(refresh_cache=True)

    @flow(name="bench-floor")
    def chain() -> None:
        previous = None
        for i in range(length):
            previous = step.submit(f"{tag}-{length}-{i}", previous)
        previous.result()

    quiet_api(quiet)
    start = time.perf_counter()
    chain()
    return time.perf_counter() - start


def floor_step_latency(op: Callable[[], object], tag: str, chain: int, repeats: int) -> float:
    """Marginal cost of one more floor task in a chain (as ``per_step_latency`` measures ours)."""
    t_one = timed(lambda: floor_chain_seconds(op, 1, tag), repeats)
    t_many = timed(lambda: floor_chain_seconds(op, chain + 1, tag), repeats)
    return (t_many - t_one) / chain


class Sample:
    """One measurement and the 2-second stalls (503 retries) during it."""

    def __init__(self, fn: Callable[[], float]) -> None:
        self.value, self.stalls = counting_retries(fn)


class Comparison:
    """Interleaved rounds of (Prefect floor, ours); the median ratio over the valid rounds.

    A round whose floor stalled on a 503 retry is void (the floor was not
    measured); stalls in our own runs count against us and stay in.
    """

    def __init__(self, name: str, target: float) -> None:
        self.name, self.target = name, target
        self.floors: list[Sample] = []
        self.ours: list[Sample] = []

    def round(self, floor_fn: Callable[[], float], ours_fn: Callable[[], float]) -> None:
        self.floors.append(Sample(floor_fn))
        self.ours.append(Sample(ours_fn))

    def per_round(self) -> str:
        """Each round's ratio (ours / floor), ``void`` where the floor stalled: how much the median hides."""
        ratios = [f"{o.value / f.value:.2f}" if f.stalls == 0 else "void"
                  for f, o in zip(self.floors, self.ours, strict=True)]
        return f"{'':34s} per round: {' '.join(ratios)}"

    def line(self) -> str:
        valid = [(f.value, o.value) for f, o in zip(self.floors, self.ours, strict=True) if f.stalls == 0]
        void = len(self.floors) - len(valid)
        stalls = sum(o.stalls for o in self.ours)
        head = f"{self.name:34s}"
        counts = (f"{len(valid)} valid rounds, {void} void (floor stalled); "
                  f"{stalls} stalls in ours, {sum(f.stalls for f in self.floors)} in the floor")
        if not valid:
            return f"{head} VOID (every round's floor stalled); {counts}"
        floor = statistics.median(f for f, _ in valid)
        ours = statistics.median(o for _, o in valid)
        ratio = statistics.median(o / f for f, o in valid)
        return (f"{head} ours {ours * 1000:8.1f} ms  floor {floor * 1000:8.1f} ms  ratio {ratio:5.2f}x "
                f"(target <= {self.target}x: {verdict(ratio, self.target)}); {counts}")


class SameWork:
    """The work our warm step does around its command, done with git, files and the SDK, without our code.

    Reset a clone of the repository to the step's snapshot (``git checkout
    --force --detach`` and ``git clean -ffdxq``, git's user and system config
    off, as the workspace runs them), hand the worktree to the sandbox uid
    (a walk that changes the owner of what is not the sandbox's yet, as
    ``Workspace.hand_over`` does), make the reports directory, append five
    hash-chained audit lines (fsynced once, after the attempt's end), run the
    command as our warm sandbox does (``exec``), and write a step report: the
    per-step work ``docs/benchmarks.md`` lists as ours.
    """

    def __init__(self, repo: Path, workspace: Path | None = None) -> None:
        self.workspace = workspace or _STATE / "same-work-workspace"
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(repo), str(self.workspace)],
                       check=True, env=GIT_ENV)
        self.snapshot = self._git("rev-parse", "HEAD").strip()
        self.audit = _STATE / "same-work-audit.jsonl"
        self.head = "0" * 64
        self._lock = threading.Lock()
        settings = SandboxSettings(image=IMAGE)
        self.owner = settings.workspace_owner()
        self.user = settings.effective_user()
        self.output_limit = settings.output_limit_bytes

    def _git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.workspace), *args], check=True, env=GIT_ENV,
                              capture_output=True, text=True).stdout

    def _record(self, handle: int, kind: str, *, sync: bool = False) -> None:
        with self._lock:
            line = json.dumps({"kind": kind, "at": time.time(), "prev": self.head,
                               "data": {"snapshot": self.snapshot}})
            self.head = hashlib.sha256(line.encode()).hexdigest()
            os.write(handle, (line + "\n").encode())
        if sync:
            os.fsync(handle)

    def _hand_over(self) -> None:
        """Give the worktree but ``.git`` to the sandbox uid, links themselves, never their targets."""
        if self.owner is None:
            return
        uid, gid = self.owner
        os.chown(self.workspace, os.getuid(), gid)
        os.chmod(self.workspace, 0o775)
        for top, dirs, files, top_fd in os.fwalk(self.workspace):
            if top == str(self.workspace):
                dirs[:] = [name for name in dirs if name != ".git"]
            for name in dirs + files:
                entry = os.stat(name, dir_fd=top_fd, follow_symlinks=False)
                if (entry.st_uid, entry.st_gid) != (uid, gid):
                    os.chown(name, uid, gid, dir_fd=top_fd, follow_symlinks=False)

    def exec(self, container: WarmContainer, command: list[str]) -> None:
        """``command`` as our warm sandbox runs it: under ``timeout``, output streamed and capped, cgroup counters."""
        api = container.container.client.api
        container_id = container.container.id
        exec_id = api.exec_create(container_id, ["timeout", "-k", "5", "600", *command],
                                  environment={"HOME": "/tmp"}, user=self.user)["Id"]
        before = read_counters(container_id)
        output = bytearray()
        for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
            output += ((chunk_out or b"") + (chunk_err or b""))[:self.output_limit - len(output)]
        exit_code = api.exec_inspect(exec_id)["ExitCode"]
        after = read_counters(container_id)
        self.counters = after.since(before) if after is not None else None
        self.left_behind = task_count(container_id)
        _check(exit_code)

    def reset(self) -> None:
        """The worktree back at the snapshot and handed to the sandbox uid."""
        self._git("checkout", "--quiet", "--force", "--detach", self.snapshot)
        self._git("clean", "-ffdxq", "-e", "/.agentic/")
        self._hand_over()

    def recorded(self, command: Callable[[], object], name: str = "step") -> None:
        """``command`` between the step's audit records, then its report file."""
        reports = self.workspace / ".agentic" / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.audit, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            self._record(handle, "step_started")
            self._record(handle, "attempt_started")
            command()
            self._record(handle, "attempt_finished", sync=True)
            self._record(handle, "verdict")
            self._record(handle, "step_finished")
        finally:
            os.close(handle)
        (reports / f"{name}.json").write_text(json.dumps({"snapshot": self.snapshot}))

    def run_container(self, client: docker.DockerClient, command: list[str]) -> None:
        """``command`` as our per-step sandbox runs it: a hardened container on the worktree, capture, counters."""
        container = hardened_container(client, command, str(self.workspace))
        try:
            stream = container.attach(stdout=True, stderr=True, stream=True, demux=True, logs=False)
            output = bytearray()
            pump = threading.Thread(target=lambda: [output.extend((o or b"") + (e or b"")) for o, e in stream])
            pump.start()
            container.start()
            self.counters = read_counters(container.id)
            exit_code = int(container.wait()["StatusCode"])
            pump.join()
            container.reload()
        finally:
            container.remove(force=True)
        _check(exit_code)

    def around(self, command: Callable[[], object]) -> None:
        """``command`` with the step's work before and after it."""
        self.reset()
        self.recorded(command)


class RunWork:
    """What a run of ours does once around its steps, with mount, git, files and Prefect's client, without our code.

    Before the steps: the size-limited workspace (an ext4 image, made once, as
    ours is) loop-mounted, the snapshot looked up, git's exclude and attribute
    files written, the sandbox image inspected, the flow run renamed, a run
    event, the worktree reset and handed over (``SameWork``). After them: the
    summary, step-table and audit-head artifacts, a run event, the unmount.
    Each step: a step event, ``SameWork.recorded`` around ``SameWork.exec``, a
    step event.
    """

    def __init__(self, repo: Path) -> None:
        self.root = _STATE / "same-run-work"
        self.image, mount_point = self.root / "workspace.img", self.root / "workspace"
        mount_point.mkdir(parents=True)
        make_workspace_image(self.image)
        self._mount()
        (mount_point / "lost+found").rmdir()
        self.work = SameWork(repo, mount_point)
        self._unmount()

    def _mount(self) -> None:
        subprocess.run(["mount", "-o", "loop,nosuid,nodev", str(self.image), str(self.root / "workspace")],
                       check=True)

    def _unmount(self) -> None:
        subprocess.run(["umount", str(self.root / "workspace")], check=True)

    def __enter__(self) -> Self:
        from prefect.runtime import flow_run

        self._mount()
        self.work._git("cat-file", "-e", f"{self.work.snapshot}^{{commit}}")
        git_dir = self.work.workspace / ".git"
        (git_dir / "info").mkdir(exist_ok=True)
        (git_dir / "info" / "exclude").write_text("/.agentic/\n")
        (git_dir / "info" / "attributes").write_text(NEUTRAL_ATTRIBUTES)
        docker.from_env().images.get(IMAGE)
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.get_id(), name="bench same run work v1: sixteen sleeps")
        self._event("run.started")
        self.work.reset()
        return self

    def __exit__(self, *_exc: object) -> None:
        rows = [{"step": f"p{i:02d}", "status": "completed"} for i in range(16)]
        create_markdown_artifact("# bench same run work\n\n16 steps completed", key="bench-same-run-summary")
        create_table_artifact(rows, key="bench-same-run-steps")
        create_table_artifact([{"seq": 80, "record": "run_finished", "head": self.work.head}],
                              key="bench-same-run-audit-head")
        self._event("run.completed")
        self._unmount()

    def _event(self, name: str) -> None:
        emit_event(event=f"bench.same-run-work.{name}", resource={"prefect.resource.id": "bench.same-run-work"})

    def step(self, container: WarmContainer, command: list[str], name: str) -> None:
        self._event("step.started")
        self.work.recorded(lambda: self.work.exec(container, command), name)
        self._event("step.completed")


class WarmContainer:
    """A running sandbox container for the floors' ``docker exec``."""

    def __enter__(self) -> Self:
        self.container = docker.from_env().containers.run(
            IMAGE, ["sleep", "infinity"], detach=True, remove=True, network_mode="none")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.container.remove(force=True)

    def exec(self, command: list[str]) -> None:
        _check(self.container.exec_run(command).exit_code)


def marginal(run_chain: Callable[[int], float], chain: int) -> float:
    """(time of chain + 1 steps - time of 1 step) / chain: the cost of one more step."""
    return (run_chain(chain + 1) - run_chain(1)) / chain


def compare_warm(comparison: Comparison, repo: Path, container: WarmContainer, chain: int, n: int,
                 same_work: SameWork | None = None) -> None:
    """Warm steps against floor tasks doing ``docker exec``; with ``same_work``, doing that work around it too."""
    settings = SandboxSettings(image=IMAGE, mode="warm")

    def op() -> None:
        if same_work is None:
            container.exec(COMMAND)
        else:
            same_work.around(lambda: same_work.exec(container, COMMAND))

    def ours(length: int) -> float:
        return run(chain_plan(f"bench-warm-{length}", length, COMMAND), repo, settings)[0]

    tag = f"warm{n}" if same_work is None else f"warm-same{n}"
    comparison.round(lambda: marginal(lambda length: floor_chain_seconds(op, length, tag), chain),
                     lambda: marginal(ours, chain))


def compare_per_step(comparison: Comparison, repo: Path, chain: int, n: int, *, slot: str = "ours",
                     same_work: SameWork | None = None) -> None:
    """A container per step against floor tasks doing ``docker run --rm``.

    ``slot`` says who takes a slot of a global concurrency limit around each
    step: ``"ours"`` (our default settings, the floor takes none), ``"none"``
    (ours with ``concurrency_limit=None``), ``"both"`` (the floor also holds a
    slot through Prefect's own ``concurrency()`` context). On a server the last
    two show what the slot costs; on the embedded API nobody takes one. With
    ``same_work``, the floor holds that slot too and its task also does our
    step's work: the reset, the records, the container hardened, mounted and
    captured as ours is.
    """
    settings = SandboxSettings(image=IMAGE, mode="per_step")
    if slot == "none":
        settings.concurrency_limit = None
    floor_slot = (slot == "both" or same_work is not None) and not uses_embedded_api()
    if floor_slot:
        ensure_limit(FLOOR_SLOT_LIMIT, 50)
    client = docker.from_env()

    def run_op() -> None:
        with concurrency(FLOOR_SLOT_LIMIT, occupy=1) if floor_slot else nullcontext():
            if same_work is None:
                client.containers.run(IMAGE, COMMAND, remove=True, network_mode="none")
            else:
                same_work.around(lambda: same_work.run_container(client, COMMAND))

    def ours(length: int) -> float:
        return run(chain_plan(f"bench-per-step-{slot}-{length}", length, COMMAND), repo, settings)[0]

    comparison.round(lambda: marginal(lambda length: floor_chain_seconds(run_op, length, f"run{slot}{n}"), chain),
                     lambda: marginal(ours, chain))


class CachedChains:
    """Chains run once fresh, then timed from the cache: ours (run-plan) and the floor's."""

    def __init__(self, repo: Path, container: WarmContainer, length: int) -> None:
        self.repo, self.container, self.length = repo, container, length
        self.settings = SandboxSettings(image=IMAGE, mode="warm")
        for n in (1, length):
            self.ours(n, fresh=True)
            self.floor(n, fresh=True)

    def ours(self, length: int, *, fresh: bool = False) -> float:
        elapsed, report = run(chain_plan(f"bench-cached-{length}", length, COMMAND), self.repo,
                              self.settings, fresh=fresh, quiet=CACHED_QUIET_S)
        assert fresh or all(s.cached for s in report.steps), "a step meant to come from the cache ran"
        return elapsed

    def floor(self, length: int, *, fresh: bool = False) -> float:
        return floor_chain_seconds(lambda: self.container.exec(COMMAND), length, "cached", fresh=fresh,
                                   quiet=CACHED_QUIET_S)

    def round(self, comparison: Comparison) -> None:
        per = self.length - 1
        comparison.round(lambda: (self.floor(self.length) - self.floor(1)) / per,
                         lambda: (self.ours(self.length) - self.ours(1)) / per)


def parallel_plan() -> dict:
    steps = [{"id": f"p{i:02d}", "tool": "shell", "args": {"command": "sleep 1"}} for i in range(16)]
    return {"id": "bench-parallel", "goal": "16 independent 1 s steps", "steps": steps}


def compare_parallel(comparison: Comparison, repo: Path, container: WarmContainer | None, *,
                     slot: bool = False, run_work: RunWork | None = None) -> None:
    """16 one-second ``sleep 1`` steps, 8 at once, against the same 16 ``docker exec``s as floor tasks.

    With ``container=None`` the floor flow starts its own container and removes
    it at the end, as a whole run of ours does; with ``slot`` too, it holds a
    slot of a global concurrency limit (Prefect's ``concurrency()``) while that
    container lives, as our warm run holds one of the sandbox limit (on a server);
    with ``run_work`` too, it does around its tasks and in each the work a run
    of ours does (``RunWork``).
    """
    slot = slot or run_work is not None
    if slot and not uses_embedded_api():
        ensure_limit(FLOOR_SLOT_LIMIT, 50)

    def execs(target: WarmContainer) -> None:
        if run_work is None:
            op: Callable[[], object] = lambda: target.exec(["sleep", "1"])
        else:
            op = lambda: run_work.step(target, ["sleep", "1"], "parallel")
        step = floor_task(op).with_options(refresh_cache=True)
        for future in [step.submit(f"parallel-{i}") for i in range(16)]:
            future.result()

    @flow(name="bench-floor-parallel", task_runner=ThreadPoolTaskRunner(max_workers=8))
    def plain() -> None:
        if container is not None:
            execs(container)
            return
        held = concurrency(FLOOR_SLOT_LIMIT, occupy=1) if slot and not uses_embedded_api() else nullcontext()
        with held, run_work or nullcontext(), WarmContainer() as own:
            execs(own)

    def floor() -> float:
        quiet_api()
        start = time.perf_counter()
        plain()
        return time.perf_counter() - start

    def ours() -> float:
        elapsed, report = run(parallel_plan(), repo, SandboxSettings(image=IMAGE, mode="warm"), concurrency=8)
        assert report.ok
        return elapsed

    comparison.round(floor, ours)


def floor_ratios(repo: Path, chain: int, rounds: int, only: set[str]) -> list[Comparison]:
    """Issue 17's ratios: our step against the Prefect floor, interleaved rounds (floor, ours, floor, ours...).

    ``only``: the comparisons to run (``COMPARISONS``).
    """
    warm = Comparison("warm step vs floor", TARGETS["warm"])
    warm_same = Comparison("  same, floor does our step's work", TARGETS["warm"])
    per_step = Comparison("container-per-step vs floor", TARGETS["per_step"])
    no_slot = Comparison("  same, ours without sandbox slot", TARGETS["per_step"])
    both_slot = Comparison("  same, floor holds a slot too", TARGETS["per_step"])
    per_step_same = Comparison("  same, floor does our step's work", TARGETS["per_step"])
    cached = Comparison("cached step vs cached plain task", TARGETS["cached"])
    parallel = Comparison("16 x 1 s steps at 8 vs plain", TARGETS["parallel"])
    cold = Comparison("16 x 1 s at 8 vs cold plain", TARGETS["parallel"])
    cold_slot = Comparison("  same, cold plain holds a slot", TARGETS["parallel"])
    run_same = Comparison("  same, cold plain does our work", TARGETS["parallel"])
    same_work = SameWork(repo) if {"warm_same", "per_step_same"} & only else None
    run_work = RunWork(repo) if "parallel_same" in only else None
    with WarmContainer() as container:
        compare_warm(warm, repo, container, chain, -1)  # warm-up: imports, first container, caches
        compare_parallel(parallel, repo, container)
        if "parallel_cold" in only:
            compare_parallel(cold, repo, None)
        for warmed_up in (warm, parallel, cold):
            warmed_up.floors.clear(), warmed_up.ours.clear()
        chains = CachedChains(repo, container, 5 * chain) if "cached" in only else None
        for n in range(rounds):
            if "warm" in only:
                compare_warm(warm, repo, container, chain, n)
            if "warm_same" in only:
                compare_warm(warm_same, repo, container, chain, n, same_work)
            if "per_step" in only:
                compare_per_step(per_step, repo, chain, n)
            if "per_step_slot" in only:
                compare_per_step(no_slot, repo, chain, n, slot="none")
                compare_per_step(both_slot, repo, chain, n, slot="both")
            if "per_step_same" in only:
                compare_per_step(per_step_same, repo, chain, n, same_work=same_work)
            if chains is not None:
                chains.round(cached)
            if "parallel" in only:
                compare_parallel(parallel, repo, container)
            if "parallel_cold" in only:
                compare_parallel(cold, repo, None)
            if "parallel_cold_slot" in only:
                compare_parallel(cold_slot, repo, None, slot=True)
            if run_work is not None:
                compare_parallel(run_same, repo, None, run_work=run_work)
            print(f"  round {n + 1}/{rounds} done", file=sys.stderr, flush=True)
    return [c for name, c in (("warm", warm), ("warm_same", warm_same), ("per_step", per_step),
                              ("per_step_slot", no_slot), ("per_step_slot", both_slot),
                              ("per_step_same", per_step_same), ("cached", cached),
                              ("parallel", parallel), ("parallel_cold", cold),
                              ("parallel_cold_slot", cold_slot), ("parallel_same", run_same)) if name in only]


def slot_costs(repo: Path, chain: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Per-step latency with and without the global sandbox limit, on a real (temporary) server.

    The limit only applies on a server (on the ephemeral API there is nobody to share it with).
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        return {mode: (per_step_latency(mode, repo, chain, repeats, slot=True, tag="-server"),
                       per_step_latency(mode, repo, chain, repeats, slot=False, tag="-server"))
                for mode in ("warm", "per_step")}


def resume_ratio(repo: Path) -> tuple[float, float, float, int]:
    """First run fails at step 90 of 100; the resume (now passing) runs from the cache."""
    plan = chain_plan("bench-resume", 100, COMMAND, fail_at=90)
    first, report = run(plan, repo, SandboxSettings(image=IMAGE, mode="warm", env={"BENCH_GO": "0"}))
    assert not report.ok, "the first run was meant to fail at step 90"
    resume, report = run(plan, repo, SandboxSettings(image=IMAGE, mode="warm", env={"BENCH_GO": "1"}),
                         fresh=False)
    assert report.ok, [s.reason for s in report.steps if not s.ok]
    cached = sum(1 for s in report.steps if s.cached)
    executed = sum(s.duration_s or 0 for s in report.steps if not s.cached)
    return first, resume, executed, cached


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter chains (a smoke run)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, 2 with --quick)")
    parser.add_argument("--only", nargs="+", default=["warm", "per_step", "cached", "parallel", "parallel_cold"],
                        choices=COMPARISONS,
                        help="run only these comparisons (warm_same: the warm ratio split into our code and "
                             "the work; per_step_same: the same with a container per step; parallel_same: the cold floor doing a run's work too; per_step_slot, "
                             "parallel_cold_slot: on a server, what the sandbox slot costs)")
    parser.add_argument("--chain", type=int, help="steps added to the one-step chain (default 10, 5 with --quick)")
    parser.add_argument("--per-round", action="store_true", help="also print each round's ratio")
    parser.add_argument("--why-stalls", action="store_true",
                        help="the embedded server prints each statement SQLite refused (to stderr)")
    parser.add_argument("--raw", action="store_true",
                        help="also raw docker exec/run latency (CLI and SDK), for context")
    parser.add_argument("--resume", action="store_true", help="also the 100-step resume ratio")
    parser.add_argument("--slot", action="store_true",
                        help="also the sandbox slot's cost on a temporary SQLite server")
    parser.add_argument("--runtimes", action="store_true",
                        help="only the per-step cost under each OCI runtime (runc, runsc)")
    options = parser.parse_args()
    repeats, chain = (3, 5) if options.quick else (10, 10)
    chain = options.chain or chain
    rounds = options.rounds or (2 if options.quick else 5)
    RETRIES.install()
    repo = make_repo()
    api = os.environ.get("PREFECT_API_URL") or "embedded (ephemeral, SQLite)"
    print(f"image {IMAGE}; command {' '.join(COMMAND)!r}; python {sys.version.split()[0]}; API {api}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{rounds} interleaved rounds, chains of {chain + 1}")
    if options.runtimes:
        runtime_costs(repo, chain, max(2, repeats // 3))
        return

    if options.raw:
        exec_cli, exec_sdk = raw_exec_latency(repeats * 2)
        run_cli, run_sdk = raw_run_latency(repeats)
        print(f"raw docker exec (CLI) {exec_cli * 1000:8.1f} ms   (SDK) {exec_sdk * 1000:8.1f} ms")
        print(f"raw docker run --rm (CLI) {run_cli * 1000:8.1f} ms   (SDK) {run_sdk * 1000:8.1f} ms")

    comparisons = floor_ratios(repo, chain, rounds, set(options.only))
    for comparison in comparisons:
        print(comparison.line())
        if options.per_round:
            print(comparison.per_round())
    print(f"2-second stalls (503 retries) in all runs, warm-up included: {RETRIES.count}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if options.resume:
        (first, resume, executed, cached), resume_retries = counting_retries(lambda: resume_ratio(repo))
        print(f"100-step plan, fails at 90 {first:8.2f} s first run; resumed {resume:8.2f} s, ratio "
              f"{resume / first:5.3f} ({cached} steps from the cache, {100 - cached} executed, "
              f"{executed:.2f} s inside them); {resume_retries} stalls")

    if options.slot:
        for mode, (with_slot, without) in slot_costs(repo, chain, max(2, repeats // 3)).items():
            print(f"on a Prefect server, {mode:8s} {with_slot * 1000:8.1f} ms a step with the sandbox slot, "
                  f"{without * 1000:8.1f} ms without: the slot adds {(with_slot - without) * 1000:+.1f} ms")


def runtime_costs(repo: Path, chain: int, repeats: int) -> None:
    """Our per-step latency under runc and under gVisor (runsc, ptrace platform), both modes.

    Within each mode the runtimes alternate round by round (runc first in odd rounds, runsc
    first in even ones), so a change in the machine's load hits both alike; each figure is the
    median of its rounds.
    """
    for mode in ("per_step", "warm"):
        samples: dict[str, list[float]] = {"runc": [], "runsc": []}
        for round_ in range(repeats):
            order = ("runc", "runsc") if round_ % 2 == 0 else ("runsc", "runc")
            for runtime in order:
                samples[runtime].append(per_step_latency(mode, repo, chain, 1, runtime=runtime))
        costs = {runtime: statistics.median(values) for runtime, values in samples.items()}
        print(f"our step, {mode:8s} runc  {costs['runc'] * 1000:8.1f} ms   runsc {costs['runsc'] * 1000:8.1f} ms"
              f"   (gVisor costs {(costs['runsc'] - costs['runc']) * 1000:+.1f} ms a step; "
              f"median of {repeats} alternating rounds)")


def unmount_workspaces() -> None:
    """The runs' size-limited workspaces are loop mounts: leave none behind."""
    from prefect_agentic.workspace import unmount_size_limited

    for path in [*(_STATE / "agentic" / "workspaces").glob("*"), _STATE / "same-run-work" / "workspace"]:
        unmount_size_limited(path)


if __name__ == "__main__":
    try:
        with embedded_run_settings(), temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            main()
    finally:
        unmount_workspaces()
