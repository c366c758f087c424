"""The worked example: upgrade a service safely, on real Docker, git and a real Prefect server.

The example service (examples/service) runs in a stack of its own per test: Redis, two stable
replicas, HAProxy splitting traffic by weight, and a bounded traffic generator. The recipe
``upgrade-service`` changes it, tests it, checks it in an ephemeral environment and canaries it.
Windows are short here (seconds); docs/guides/upgrade-service.md shows a longer rehearsal.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from conftest import EXAMPLES, _missing, git_commit_all
from gate_helpers import Approver
from prefect.client.orchestration import get_client
from rich.console import Console
from test_agent_loop import run as run_with_loop

from prefect_agentic.blocks import GateDefaults, ToolPolicy
from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.cli.render import report_table
from prefect_agentic.environments.analysis import parse_metrics
from prefect_agentic.environments.images import (
    RUNTIME_IMAGE,
    ServiceImageError,
    build_service_image,
    service_files,
)
from prefect_agentic.environments.labels import (
    EPHEMERAL,
    LABEL_ENVIRONMENT,
    LABEL_ROLE,
    environments,
)
from prefect_agentic.environments.stack import Stack
from prefect_agentic.planners.recipes import RecipePlanner

FAST_GATES = GateDefaults(poll_interval_seconds=0.5, timeout_seconds=120)
GOOD = "sed -i 's/VERSION = \"1.0.0\"/VERSION = \"1.1.0\"/' shop/config.py"
# A latency regression: functional tests and integration checks pass, production traffic does not.
BAD = GOOD + " && sed -i 's/\"ADDED_LATENCY_MS\", \"0\"/\"ADDED_LATENCY_MS\", \"400\"/' shop/config.py"
# An error regression that tests and integration checks do not see: past 200 hits (production's shared
# counter, never the fresh one of a test or of the ephemeral environment) one request in three gets a 500.
ERRORS = GOOD + " && sed -i 's/return 200, json.dumps/return (500 if hits > 200 and hits % 3 == 0 else 200), json.dumps/' shop/app.py"
TRAFFIC = 25  # requests per second through the proxy, from the stack's traffic generator


@pytest.fixture(scope="session")
def service_runtime(docker_client: docker.DockerClient) -> str:
    try:
        docker_client.images.get(RUNTIME_IMAGE)
    except docker.errors.ImageNotFound:
        _missing(f"service runtime image {RUNTIME_IMAGE} is not built (scripts/setup.sh service_images)")
    return RUNTIME_IMAGE


@pytest.fixture
def service_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "shop"
    shutil.copytree(EXAMPLES / "service", repo, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    git_commit_all(repo, "shop 1.0.0")
    return repo


@pytest.fixture
def stack(docker_client: docker.DockerClient, service_runtime: str, service_repo: Path) -> Iterator[Stack]:
    stable, _ = build_service_image(docker_client, service_files(WorkspaceFiles(service_repo), "."))
    target = Stack(docker_client, f"canary-test-{uuid.uuid4().hex[:6]}")
    try:
        target.up(stable, loadgen_rate=TRAFFIC)
        yield target
    finally:
        target.down()


def plan(target: Stack, change: str, steps: list[int], window: float, **more: Any) -> str:
    made = RecipePlanner().plan("upgrade-service", {
        "stack": target.name, "change": change, "steps": steps, "window_seconds": window,
        "interval_seconds": 1.5, "min_requests": 8, "failure_limit": 2, **more})
    return made.model_dump_json(exclude_none=True)


def traffic(target: Stack) -> dict[str, int]:
    """What the stack's traffic generator got back so far, by outcome (200, 500, error)."""
    loadgen = target.container("loadgen")
    assert loadgen is not None
    port = loadgen.attrs["NetworkSettings"]["Ports"]["9100/tcp"][0]["HostPort"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
        text = answer.read().decode()
    return {line.split('"')[1]: int(float(line.split()[-1])) for line in text.splitlines() if line}


def failed(counts: dict[str, int]) -> int:
    return sum(n for outcome, n in counts.items() if outcome != "200")


def sent_since(target: Stack, before: dict[str, int]) -> tuple[int, int]:
    """(requests sent, requests failed) by the traffic generator since ``before = traffic(target)``."""
    after = traffic(target)
    return sum(after.values()) - sum(before.values()), failed(after) - failed(before)


def summary_text(report: Any) -> str:
    """The run's summary as `agentic run` prints it at the end."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(report_table(report))
    return console.export_text()


def canaries(client: docker.DockerClient, target: Stack) -> int:
    return len(client.containers.list(all=True, filters={"label": [f"{LABEL_ENVIRONMENT}={target.name}",
                                                                  f"{LABEL_ROLE}=canary"]}))


def records(caplog: pytest.LogCaptureFixture, kind: str) -> list[dict[str, Any]]:
    return [r.args[2] for r in caplog.records
            if r.name == "prefect_agentic.record" and r.args and r.args[0] == kind]


@pytest.fixture(autouse=True)
def _records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="prefect_agentic.record")


# ---- no Docker needed -----------------------------------------------------------------------

def test_the_analysis_reads_prometheus_text_and_interpolates_the_percentile() -> None:
    before = parse_metrics('http_requests_total{code="200"} 10\nhttp_request_duration_seconds_bucket{le="0.1"} 10\n'
                           'http_request_duration_seconds_bucket{le="0.5"} 10\nhttp_request_duration_seconds_bucket{le="+Inf"} 10\n')
    after = parse_metrics('http_requests_total{code="200"} 100\nhttp_requests_total{code="500"} 10\n'
                          'http_request_duration_seconds_bucket{le="0.1"} 10\nhttp_request_duration_seconds_bucket{le="0.5"} 110\n'
                          'http_request_duration_seconds_bucket{le="+Inf"} 110\n')
    delta = after.minus(before)
    assert (delta.requests, delta.errors) == (100, 10) and delta.error_rate == 0.1
    assert delta.percentile_ms(95) == pytest.approx(480)  # 95th of 100 requests, all in (0.1, 0.5]
    assert after.minus(parse_metrics('http_requests_total{code="200"} 500\n')) == after  # a restart resets


def test_the_recipe_gates_the_canary_and_checks_its_parameters() -> None:
    made = RecipePlanner().plan("upgrade-service", {"stack": "shop", "change": GOOD})
    assert [s.id for s in made.steps] == ["change", "unit-tests", "lint", "commit", "image", "integration", "canary"]
    from prefect_agentic.policy import approval_rules, auto_approves
    from prefect_agentic.tools.registry import default_registry

    policy = ToolPolicy()
    assert approval_rules(policy, made.step("canary"), default_registry()) == ["operation service_canary:deploy"]
    rollback = made.step("canary").model_copy(update={"tool": "service_rollback", "args": {"stack": "shop"}})
    shift = rollback.model_copy(update={"tool": "service_traffic", "args": {"stack": "shop", "percent": 10}})
    assert approval_rules(policy, rollback, default_registry()) == []
    assert approval_rules(policy, shift, default_registry()) == ["operation service_traffic:shift-traffic"]
    with pytest.raises(Exception, match="must rise strictly and end at 100"):
        RecipePlanner().plan("upgrade-service", {"stack": "shop", "change": GOOD, "steps": [50, 10]})
    gated = RecipePlanner().plan("upgrade-service", {"stack": "shop", "change": GOOD, "promote_gate": True})
    assert [(s.id, s.args["steps"], s.args.get("hold", False), s.requires_approval) for s in gated.steps[-2:]] == [
        ("canary", [10, 50], True, False), ("promote", [100], False, True)]
    assert not auto_approves(ToolPolicy(auto_approve=["*:deploy"]), gated.step("promote"), default_registry())
    with pytest.raises(Exception, match="promote_gate needs a canary step below 100 %"):
        RecipePlanner().plan("upgrade-service", {"stack": "shop", "change": GOOD, "steps": [100], "promote_gate": True})


def test_service_code_is_read_without_following_links_out_of_the_workspace(tmp_path: Path) -> None:
    service = tmp_path / "ws"
    shutil.copytree(EXAMPLES / "service", service, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (tmp_path / "secret").write_text("host secret")
    (service / "shop" / "leak.py").symlink_to(tmp_path / "secret")
    (service / "linked").symlink_to(tmp_path)
    workspace = WorkspaceFiles(service)
    files = service_files(workspace, ".")
    assert "shop/app.py" in files and "shop/leak.py" not in files
    assert not any(name.startswith("linked/") for name in files)
    assert all(b"host secret" not in data for data in files.values())
    with pytest.raises(ServiceImageError, match="leaves the workspace"):
        service_files(workspace, "../")
    with pytest.raises(ServiceImageError, match="symbolic link|not a directory"):
        service_files(workspace, "linked")


# ---- real Docker, real Prefect server -------------------------------------------------------

pytestmark_server = pytest.mark.usefixtures("prefect_api")


@pytestmark_server
def test_a_good_change_is_approved_and_promoted_to_100_percent(  # type: ignore[no-untyped-def]
        stack: Stack, service_repo: Path, sandbox_image: str, docker_client, caplog) -> None:
    before = stack.state()
    # Two gates: the canary's deploy (policy), then the promotion to 100 % once the canary held 50 %.
    approver = Approver({"decision": "approve", "approver": "sre", "reason": "integration green"},
                        {"decision": "approve", "approver": "sre", "reason": "50 % held"})
    report = run_with_loop(plan(stack, GOOD, [50, 100], window=4, promote_gate=True), service_repo, sandbox_image,
                           None, gates=FAST_GATES)
    approver.done()
    assert report.ok, [(s.step_id, s.reason) for s in report.steps]
    steps = {s.step_id: s for s in report.steps}
    assert steps["integration"].output["failed"] == 0 and steps["integration"].output["torn_down"]
    held, canary = steps["canary"].output, steps["promote"].output
    assert held["decision"] == "held" and [s["share"] for s in held["steps"]] == [50]
    assert canary["decision"] == "promoted" and [s["share"] for s in canary["steps"]] == [100]
    summary = summary_text(report)
    assert "canary held at 50 % for promotion" in summary and "canary promoted to 100 %" in summary
    assert all(s["result"] == "pass" and s["requests"] >= 8 for s in held["steps"] + canary["steps"])
    after = stack.state()
    assert after.stable_version == canary["image"] != before.stable_version
    assert after.canary_version is None and canaries(docker_client, stack) == 0
    with urllib.request.urlopen(after.proxy_url, timeout=5) as answer:
        assert b'"version": "1.1.0"' in answer.read()
    assert failed(traffic(stack)) == 0  # the traffic generator never saw a failure
    review = approver.questions[0]  # what the approver read: the operation, tests, integration, the diff
    assert "service_canary:deploy" in review and "`unit-tests` 4 passed, 0 failed" in review
    assert "`integration` 4 checks passed, 0 failed" in review and '+VERSION = "1.1.0"' in review
    assert "`canary` canary held (50 %: " in approver.questions[1]
    _, decision = records(caplog, "canary_decision")
    assert decision["took_over_canary"] and decision["decision"] == "promoted"
    assert decision["thresholds"]["max_error_rate"] == 0.05
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
        keys = {a.key for a in artifact}
    assert f"canary-{stack.name}" in keys and f"canary-{stack.name}-checks" in keys
    assert not any(name.startswith("agentic-it-") for name in environments(docker_client, EPHEMERAL))


@pytestmark_server
def test_a_bad_change_is_rolled_back_within_the_window_and_stable_keeps_serving(  # type: ignore[no-untyped-def]
        stack: Stack, service_repo: Path, sandbox_image: str, docker_client, caplog) -> None:
    before = stack.state()
    window = 20.0
    sent_before = traffic(stack)
    started = time.monotonic()
    report = run_with_loop(plan(stack, BAD, [20, 100], window=window, max_latency_ms=200), service_repo,
                           sandbox_image, None,
                           gates=FAST_GATES, policy=ToolPolicy(auto_approve=["*:deploy"]))
    assert not report.ok
    canary = {s.step_id: s for s in report.steps}["canary"].output
    assert canary["decision"] == "rolled_back" and canary["reason"].startswith("step 20 %: 2 failed checks")
    assert "p95 latency" in canary["reason"] and "> 200 ms" in canary["reason"]
    summary = summary_text(report)  # what `agentic run` prints at the end
    assert "canary ROLLED BACK at 20 %: 2 failed checks" in summary and "Run FAILED" in summary
    assert [c["result"] for c in canary["checks"]].count("fail") == 2
    assert canary["checks"][-1]["at_seconds"] < window  # rolled back before the first window ended
    assert stack.state() == before  # stable untouched, no canary, all traffic on stable
    during, lost = sent_since(stack, sent_before)
    # Stated bound: at most 1 % of the requests sent during the rollout fail (the canary is slow, not broken,
    # and taking it out drains it first).
    assert during > 0 and lost <= 0.01 * during, (lost, during, time.monotonic() - started)
    for _ in range(20):
        with urllib.request.urlopen(before.proxy_url, timeout=5) as answer:
            assert answer.status == 200
    [decision] = records(caplog, "canary_decision")
    assert decision["decision"] == "rolled_back" and "latency" in decision["reason"]


@pytestmark_server
def test_an_error_regression_is_rolled_back_within_the_window(  # type: ignore[no-untyped-def]
        stack: Stack, service_repo: Path, sandbox_image: str, docker_client, caplog) -> None:
    before = stack.state()
    window = 20.0
    sent_before = traffic(stack)
    report = run_with_loop(plan(stack, ERRORS, [20, 100], window=window), service_repo, sandbox_image, None,
                           gates=FAST_GATES, policy=ToolPolicy(auto_approve=["*:deploy"]))
    steps = {s.step_id: s for s in report.steps}
    assert steps["unit-tests"].ok and steps["integration"].output["failed"] == 0  # unseen before production
    canary = steps["canary"].output
    assert canary["decision"] == "rolled_back" and canary["reason"].startswith("step 20 %: 2 failed checks")
    assert "error rate" in canary["reason"] and "> 0.05" in canary["reason"]
    assert canary["checks"][-1]["at_seconds"] < window  # rolled back before the first window ended
    assert stack.state() == before
    during, lost = sent_since(stack, sent_before)
    served_by_canary = sum(c["requests"] for c in canary["checks"])
    # Stated bound: only the canary's share fails, only until the rollback: no more failures than the
    # canary answered requests in its checks, and at most 2 % of all requests sent during the run.
    assert 0 < lost <= served_by_canary and lost <= 0.02 * during, (lost, served_by_canary, during)
    [decision] = records(caplog, "canary_decision")
    assert decision["decision"] == "rolled_back" and "error rate" in decision["reason"]


@pytestmark_server
def test_a_canary_held_at_a_promotion_gate_is_rolled_back_when_the_gate_is_rejected(  # type: ignore[no-untyped-def]
        stack: Stack, service_repo: Path, sandbox_image: str, docker_client, caplog) -> None:
    before = stack.state()
    approver = Approver({"decision": "reject", "approver": "sre", "reason": "p95 too close to the limit"})
    report = run_with_loop(plan(stack, GOOD, [50, 100], window=4, promote_gate=True), service_repo, sandbox_image,
                           None, gates=FAST_GATES, policy=ToolPolicy(auto_approve=["*:deploy"]))
    approver.done()
    why = "step 'promote' rejected by sre: p95 too close to the limit"
    assert not report.ok and report.stopped is not None and report.stopped.startswith(f"{why}; then ")
    # the summary says what the stop undid, not only why it stopped
    assert f"canary of stack '{stack.name}' (step 'canary') rolled back to stable {before.stable_version}" \
        in report.stopped
    steps = {s.step_id: s for s in report.steps}
    assert steps["canary"].output["decision"] == "held" and steps["promote"].status.value == "not_run"
    assert [s["share"] for s in steps["canary"].output["steps"]] == [50]  # held at 50 % while the gate waited
    review = approver.questions[0]  # the approver decides on the canary's numbers at 50 %
    assert "tool `service_canary`" in review and "`canary` canary held (50 %: " in review, review
    assert stack.state() == before and canaries(docker_client, stack) == 0  # stable at 100 %, canary gone
    held, rolled = records(caplog, "canary_decision")
    assert held["decision"] == "held"
    assert rolled["decision"] == "rolled_back" and rolled["reason"] == f"rolled back: {why}"
    with get_client(sync_client=True) as client:
        [artifact] = [a for a in client.read_latest_artifacts() if a.key == f"canary-{stack.name}"]
    assert "rejected by sre" in (artifact.description or "")
    for _ in range(10):
        with urllib.request.urlopen(before.proxy_url, timeout=5) as answer:
            assert b'"version": "1.0.0"' in answer.read()


@pytestmark_server
def test_a_canary_held_at_a_promotion_gate_nobody_answers_is_rolled_back_when_the_gate_times_out(  # type: ignore[no-untyped-def]
        stack: Stack, service_repo: Path, sandbox_image: str, docker_client, caplog) -> None:
    before = stack.state()
    unanswered = GateDefaults(poll_interval_seconds=0.5, timeout_seconds=3)
    report = run_with_loop(plan(stack, GOOD, [50, 100], window=4, promote_gate=True), service_repo, sandbox_image,
                           None, gates=unanswered, policy=ToolPolicy(auto_approve=["*:deploy"]))
    assert not report.ok and report.stopped is not None
    why, undone = report.stopped.split("; then ", 1)
    assert why.startswith("step 'promote' was not approved: no answer within 3")
    assert undone == f"canary of stack '{stack.name}' (step 'canary') rolled back to stable {before.stable_version}"
    steps = {s.step_id: s for s in report.steps}
    assert steps["canary"].output["decision"] == "held" and steps["promote"].status.value == "not_run"
    assert stack.state() == before and canaries(docker_client, stack) == 0
    held, rolled = records(caplog, "canary_decision")
    assert held["decision"] == "held"
    assert rolled["decision"] == "rolled_back" and "no answer within" in rolled["reason"]
    assert "rolled back to stable" in summary_text(report)


@pytestmark_server
def test_a_run_killed_mid_canary_is_rerun_to_a_consistent_state(  # type: ignore[no-untyped-def]
        stack: Stack, service_repo: Path, sandbox_image: str, docker_client, tmp_path: Path) -> None:
    ToolPolicy(auto_approve=["*:deploy"]).save("canary-auto", overwrite=True)
    config = service_repo / "shop" / "config.py"  # the repository already holds the new version
    config.write_text(config.read_text().replace('VERSION = "1.0.0"', 'VERSION = "1.1.0"'))
    git_commit_all(service_repo, "shop 1.1.0")
    made = RecipePlanner().plan("upgrade-service", {"stack": stack.name, "change": "echo unchanged", "steps": [20, 100],
                                                    "window_seconds": 5, "interval_seconds": 1.5, "min_requests": 8})
    canary_only = made.model_copy(update={"steps": [made.step("canary").model_copy(update={"depends_on": []})]})
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(canary_only.model_dump_json(exclude_none=True))
    seen = []
    watching = threading.Event()

    def watch() -> None:  # never two canaries, never zero healthy stable replicas
        while not watching.is_set():
            seen.append((canaries(docker_client, stack), sum(
                1 for name, status in stack.server_status().items() if name.startswith("stable") and status.startswith("UP"))))
            time.sleep(0.3)

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect_agentic.cli.main", "run", str(plan_file), "--repo", str(service_repo),
             "--image", sandbox_image, "--policy-block", "canary-auto", "--json"],
            env={**os.environ, "AGENTIC_HOME": str(tmp_path / "home")}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    proc = start()
    deadline = time.monotonic() + 240
    while stack.state().canary_weight == 0:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = stack.state()
    assert left.canary_version is not None and left.canary_weight == 20  # the killed run's canary is still there

    rerun = start()
    out, err = rerun.communicate(timeout=300)
    watching.set()
    watcher.join()
    assert rerun.returncode == 0, out[-4000:] + err[-2000:]
    after = stack.state()
    assert after.stable_version == left.canary_version and after.canary_version is None
    assert max(c for c, _ in seen) == 1 and min(s for _, s in seen) >= 1
    assert canaries(docker_client, stack) == 0
    assert not any(name.startswith("agentic-it-") for name in environments(docker_client, EPHEMERAL))


def test_a_canary_whose_run_is_gone_is_listed_as_orphaned_and_rolled_back_by_clean(  # type: ignore[no-untyped-def]
        stack: Stack, service_repo: Path, docker_client) -> None:
    from typer.testing import CliRunner

    from prefect_agentic.cli.main import app

    before = stack.state()
    config = service_repo / "shop" / "config.py"
    config.write_text(config.read_text().replace('VERSION = "1.0.0"', 'VERSION = "1.1.0"'))
    image, _ = build_service_image(docker_client, service_files(WorkspaceFiles(service_repo), "."))
    stack.deploy_canary(image)  # deployed by this (living) process: a run still watching its canary
    stack.set_canary_share(20)
    listed = CliRunner().invoke(app, ["canaries", "list"])
    assert f"stack      {stack.name}  (6 containers, canary at 20 %, its run is alive)" in listed.stdout, listed.output
    assert f"stack {stack.name}" not in CliRunner().invoke(app, ["canaries", "clean"]).stdout
    assert stack.state().canary_weight == 20
    stack.rollback()
    # A run that deployed a canary and died without rolling it back (SIGKILL, never re-run).
    subprocess.run([sys.executable, "-c", (
        "import docker; from prefect_agentic.environments.stack import Stack; "
        f"s = Stack(docker.from_env(), {stack.name!r}); s.deploy_canary({image!r}); s.set_canary_share(20)")],
        check=True, timeout=120)
    listed = CliRunner().invoke(app, ["canaries", "list"])
    assert (f"stack      {stack.name}  (6 containers, canary at 20 %, orphaned: its run's process is gone)"
            in listed.stdout), listed.output
    cleaned = CliRunner().invoke(app, ["canaries", "clean"])
    assert cleaned.exit_code == 0 and f"stack {stack.name}: orphaned canary rolled back" in cleaned.stdout
    assert stack.state() == before and canaries(docker_client, stack) == 0


def test_agentic_canaries_lists_and_cleans_an_environment_whose_run_is_gone(docker_client) -> None:  # type: ignore[no-untyped-def]
    import socket

    from typer.testing import CliRunner

    from prefect_agentic.cli.main import app
    from prefect_agentic.environments.labels import LABEL_OWNER, labels

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that is no longer alive: the owner of a killed run's environment
    name = f"agentic-it-leftover-{uuid.uuid4().hex[:6]}"
    docker_client.networks.create(name, internal=True, labels={
        **labels(name, EPHEMERAL, "network"), LABEL_OWNER: f"{socket.gethostname()}:{dead.pid}"})
    mine = f"agentic-it-alive-{uuid.uuid4().hex[:6]}"
    docker_client.networks.create(mine, internal=True, labels=labels(mine, EPHEMERAL, "network"))
    try:
        listed = CliRunner().invoke(app, ["canaries", "list"])
        assert f"ephemeral  {name}  (0 containers, leftover)" in listed.stdout, listed.output
        assert f"ephemeral  {mine}  (0 containers, in use)" in listed.stdout
        cleaned = CliRunner().invoke(app, ["canaries", "clean"])
        assert cleaned.exit_code == 0 and name in cleaned.stdout and mine not in cleaned.stdout
        assert docker_client.networks.list(names=[name]) == [] and docker_client.networks.list(names=[mine])
    finally:
        for network in docker_client.networks.list(names=[name, mine]):
            network.remove()
