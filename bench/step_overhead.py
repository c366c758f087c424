"""Step overhead of prefect-agentic against raw Docker, measured in one process.

Prints, for the same command and image:
  * raw ``docker exec`` into a running container (through the docker CLI, and
    through the docker SDK as our sandbox does), and our per-step latency with
    one warm container per run;
  * raw ``docker run --rm`` (CLI and SDK), and our per-step latency with a
    container per step;
  * the ratios against the targets (judged against the SDK, the stricter
    baseline: it has no CLI start-up time);
  * a 100-step plan that fails at step 90, resumed (time of the resume / time of
    the first run);
  * 16 independent 1-second steps at concurrency 8, against the same 16
    sleeps as plain Prefect tasks in a plain flow (the floor Prefect itself sets);
  * Prefect's own floors for the first three: a chain of plain Prefect tasks,
    configured as our step tasks are (tags, retries, timeout, persisted result,
    own cache key), whose body is only the raw docker call, run and resumed
    from the cache the same way. Our figure over that floor is what
    prefect-agentic itself adds;
  * how many API calls Prefect's client had to retry after a 503 (its first
    retry waits 2 s): the embedded server's SQLite sometimes answers "database
    is locked" to the concurrency-slot call the task engine makes for every
    tagged task (see the README's benchmark figures).

Runs use the embedded API's settings exactly as ``agentic run`` does
(``prefect_agentic.settings.embedded_run_settings``).

"Our per-step latency" is the marginal cost of one more step in a chain of
steps run by the ``run-plan`` flow (Prefect task, workspace checkout,
sandboxed command, evaluation): (time of N+1 steps - time of 1 step) / N,
so the flow's fixed start-up cost is not spread over the steps.

Usage: ``python bench/step_overhead.py [--quick]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")  # the resume part fails a step on purpose
_STATE = Path(tempfile.mkdtemp(prefix="agentic-bench-"))
os.environ.setdefault("PREFECT_HOME", str(_STATE / "prefect"))
os.environ.setdefault("AGENTIC_HOME", str(_STATE / "agentic"))

import docker  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from prefect_agentic.blocks.sandbox_settings import SandboxSettings  # noqa: E402
from prefect_agentic.errors import PlanRunFailed  # noqa: E402
from prefect_agentic.flows.run_plan import run_plan  # noqa: E402
from prefect_agentic.plan.loader import plan_from_data  # noqa: E402
from prefect_agentic.report import RunReport  # noqa: E402
from prefect_agentic.settings import embedded_run_settings  # noqa: E402

IMAGE = os.environ.get("AGENTIC_SANDBOX_IMAGE", "prefect-agentic/sandbox:2")
COMMAND = ["python3", "-c", "print(sum(range(200000)))"]
"""A small real command (an interpreter start and a little work, ~50 ms)."""

TARGETS = {"warm": 1.15, "per_step": 1.10, "resume": 0.05, "parallel_s": 2.3}


class RetryCounter(logging.Handler):
    """Counts the API calls Prefect's client retried after a 503 (it logs each at DEBUG)."""

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
        concurrency: int = 4) -> tuple[float, RunReport]:
    flow = run_plan.with_options(task_runner=ThreadPoolTaskRunner(max_workers=concurrency))
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
                     tag: str = "") -> float:
    """Marginal cost of a step; ``slot=False`` runs without the global sandbox concurrency limit."""
    settings = SandboxSettings(image=IMAGE, mode=mode)
    if not slot:
        settings.concurrency_limit = None
    tag += "" if slot else "-noslot"
    one = chain_plan(f"bench-{mode}{tag}-1", 1, COMMAND)
    many = chain_plan(f"bench-{mode}{tag}-{chain + 1}", chain + 1, COMMAND)
    t_one = timed(lambda: run(one, repo, settings), repeats)
    t_many = timed(lambda: run(many, repo, settings), repeats)
    return (t_many - t_one) / chain


def floor_task(op: Callable[[], object]) -> Callable[..., object]:
    """A plain Prefect task configured as ``tasks.step.step_task`` configures ours, doing ``op``."""

    @task(persist_result=True, result_serializer="json", tags={"plan:bench-floor", "tool:shell"},
          retries=1, cache_key_fn=lambda _ctx, p: f"bench-floor-{p['key']}")
    def step(key: str, previous: dict | None = None) -> dict:
        op()
        return {"key": key, "snapshot": "0" * 40}

    return step


def floor_chain_seconds(op: Callable[[], object], length: int, tag: str, *, fresh: bool = True) -> float:
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

    start = time.perf_counter()
    chain()
    return time.perf_counter() - start


def floor_step_latency(op: Callable[[], object], tag: str, chain: int, repeats: int) -> float:
    """Marginal cost of one more floor task in a chain (as ``per_step_latency`` measures ours)."""
    t_one = timed(lambda: floor_chain_seconds(op, 1, tag), repeats)
    t_many = timed(lambda: floor_chain_seconds(op, chain + 1, tag), repeats)
    return (t_many - t_one) / chain


def floor_cached_latency(op: Callable[[], object], length: int = 100) -> float:
    """Cost of one cached floor task: a chain run once, then again from the cache."""
    floor_chain_seconds(op, length, "cached")
    t_one = timed(lambda: floor_chain_seconds(op, 1, "cached", fresh=False), 2)
    t_many = floor_chain_seconds(op, length, "cached", fresh=False)
    return (t_many - t_one) / (length - 1)


def floors(chain: int, repeats: int) -> dict[str, float]:
    """Prefect's floors: plain tasks whose body is only the raw docker call."""
    client = docker.from_env()
    container = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True, remove=True,
                                      network_mode="none")
    try:
        def exec_op() -> None:
            _check(container.exec_run(COMMAND).exit_code)

        warm = floor_step_latency(exec_op, "warm", chain, repeats)
        cached = floor_cached_latency(exec_op)
    finally:
        container.remove(force=True)

    def run_op() -> None:
        client.containers.run(IMAGE, COMMAND, remove=True, network_mode="none")

    return {"warm": warm, "per_step": floor_step_latency(run_op, "run", chain, repeats), "cached": cached}


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


def parallel_seconds(mode: str, repo: Path) -> float:
    steps = [{"id": f"p{i:02d}", "tool": "shell", "args": {"command": "sleep 1"}} for i in range(16)]
    plan = {"id": f"bench-parallel-{mode}", "goal": "16 independent 1 s steps", "steps": steps}
    settings = SandboxSettings(image=IMAGE, mode=mode)
    run(plan, repo, settings, concurrency=8)  # warm-up (first container start, imports)
    elapsed, report = run(plan, repo, settings, concurrency=8)
    assert report.ok
    return elapsed


@task
def _sleep_one_second(index: int) -> int:
    time.sleep(1)
    return index


@flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
def _plain_parallel_flow() -> list[int]:
    return [f.result() for f in [_sleep_one_second.submit(i) for i in range(16)]]


def plain_prefect_parallel_seconds() -> float:
    """16 one-second sleeps as plain Prefect tasks, 8 at once: no sandbox, no workspace."""
    _plain_parallel_flow()  # warm-up
    start = time.perf_counter()
    _plain_parallel_flow()
    return time.perf_counter() - start


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for a smoke run)")
    options = parser.parse_args()
    repeats, chain = (3, 5) if options.quick else (10, 20)
    RETRIES.install()
    repo = make_repo()
    print(f"image {IMAGE}; command {' '.join(COMMAND)!r}; python {sys.version.split()[0]}")

    exec_cli, exec_sdk = raw_exec_latency(repeats * 2)
    warm_s, warm_retries = counting_retries(lambda: per_step_latency("warm", repo, chain, max(2, repeats // 3)))
    run_cli, run_sdk = raw_run_latency(repeats)
    per_step_s, per_step_retries = counting_retries(
        lambda: per_step_latency("per_step", repo, chain, max(2, repeats // 3)))
    floor, floor_retries = counting_retries(lambda: floors(chain, max(2, repeats // 3)))
    print(f"raw docker exec (CLI)      {exec_cli * 1000:8.1f} ms")
    print(f"raw docker exec (SDK)      {exec_sdk * 1000:8.1f} ms")
    print(f"  Prefect floor (exec)     {floor['warm'] * 1000:8.1f} ms   ratio {floor['warm'] / exec_sdk:5.2f}x SDK"
          f"   ({floor_retries} API retries in all floor runs)")
    print(f"our step, warm container   {warm_s * 1000:8.1f} ms   ratio {warm_s / exec_sdk:5.2f}x "
          f"SDK, {warm_s / exec_cli:5.2f}x CLI, {warm_s / floor['warm']:5.2f}x Prefect floor  "
          f"(target <= {TARGETS['warm']}x SDK: {verdict(warm_s / exec_sdk, TARGETS['warm'])}); "
          f"{warm_retries} API retries")
    print(f"raw docker run --rm (CLI)  {run_cli * 1000:8.1f} ms")
    print(f"raw docker run --rm (SDK)  {run_sdk * 1000:8.1f} ms")
    print(f"  Prefect floor (run)      {floor['per_step'] * 1000:8.1f} ms   ratio "
          f"{floor['per_step'] / run_sdk:5.2f}x SDK")
    print(f"our step, container/step   {per_step_s * 1000:8.1f} ms   ratio {per_step_s / run_sdk:5.2f}x "
          f"SDK, {per_step_s / run_cli:5.2f}x CLI, {per_step_s / floor['per_step']:5.2f}x Prefect floor  "
          f"(target <= {TARGETS['per_step']}x SDK: {verdict(per_step_s / run_sdk, TARGETS['per_step'])}); "
          f"{per_step_retries} API retries")

    (first, resume, executed, cached), resume_retries = counting_retries(lambda: resume_ratio(repo))
    ratio = resume / first
    print(f"100-step plan, fails at 90 {first:8.2f} s first run (89 steps completed)")
    print(f"  resumed                  {resume:8.2f} s   ratio {ratio:5.3f}  "
          f"(target <= {TARGETS['resume']}: {verdict(ratio, TARGETS['resume'])}); "
          f"{cached} steps from the cache, {100 - cached} executed ({executed:.2f} s inside them); "
          f"{resume_retries} API retries")
    must_run = (100 - cached) / 89
    per_cached = max(0.0, resume - executed) / max(1, cached)
    print(f"  note: {100 - cached} of 100 steps must execute on resume, so a resume that costs nothing "
          f"but those steps is {must_run:.3f} of the first run")
    print(f"  a cached step costs {per_cached * 1000:.1f} ms; a cached plain Prefect task "
          f"{floor['cached'] * 1000:.1f} ms (Prefect floor)")

    for mode, (with_slot, without) in slot_costs(repo, chain, max(2, repeats // 3)).items():
        print(f"on a Prefect server, {mode:8s} {with_slot * 1000:8.1f} ms a step with the sandbox slot, "
              f"{without * 1000:8.1f} ms without: the slot adds {(with_slot - without) * 1000:+.1f} ms")

    floor_s = plain_prefect_parallel_seconds()
    print(f"16 x 1 s plain Prefect tasks, 8 at once {floor_s:6.2f} s   (Prefect's own floor)")
    for mode in ("warm", "per_step"):
        elapsed, retries = counting_retries(lambda mode=mode: parallel_seconds(mode, repo))
        print(f"16 x 1 s steps, 8 at once ({mode:8s}) {elapsed:6.2f} s   ratio {elapsed / floor_s:5.2f}x "
              f"plain Prefect  (target <= {TARGETS['parallel_s']} s: "
              f"{verdict(elapsed, TARGETS['parallel_s'])}); {retries} API retries")


if __name__ == "__main__":
    with embedded_run_settings():
        main()
