"""From a fresh clone: `agentic up`, `agentic init`, `prefect deploy --all`, `agentic submit`.

A real Prefect server (SQLite) and a real process worker, both started by
`agentic up`; flow runs are real subprocesses of the worker running real
sandboxes. Also: the plan is the flow run's own (an upgrade between a pause, or a
suspend, and its resume does not change it), and named concurrency limits.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from uuid import UUID

import pytest
import yaml
from deploy_helpers import PrefectStack, free_port, wait_for_state
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings
from test_agent_loop import GATED
from test_gate_suspend import SHIP  # notes (writes), then publish (gated, reads)

from prefect_agentic.concurrency import holding, wait_for_rate
from prefect_agentic.plan import parse_plan
from prefect_agentic.submit import check_parameters_here
from prefect_agentic.workspace import mounted, resolve_base, run_key

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DEPLOYMENTS = {"run-plan/default", "run-plan/docker", "fix-lint/default", "test-and-report/default",
               "test-and-report/nightly", "triage-failure/default", "open-pull-request/default",
               "upgrade-dependency/default", "generate-tests/default", "security-scan/default"}

NIGHTLY_REPO = "/srv/repos/nightly-app"
TINY = """
id: tiny
goal: Say hello and run the tests
steps:
  - {id: hello, tool: shell, writes_workspace: true, args: {command: "echo hello > out.txt"}}
  - {id: tests, tool: pytest, depends_on: [hello], success: {tests_failed: 0}}
"""



@pytest.fixture(scope="module")
def stack(tmp_path_factory, sandbox_image) -> Iterator[PrefectStack]:  # type: ignore[no-untyped-def]
    """`agentic up` in a fresh checkout: a Prefect server and a worker on agentic-process."""
    stack = PrefectStack(tmp_path_factory.mktemp("deploy"), free_port())
    # The stack's Python runs the checkout's pack, as a machine with that version installed
    # would: upgrading the checkout upgrades what the worker's next flow-run process loads.
    stack.env["PYTHONPATH"] = str(stack.checkout)
    up = stack.run("agentic", "up", "--port", str(stack.port))
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"Prefect server: http://127.0.0.1:{stack.port} " in up.stdout
    yield stack
    down = stack.run("agentic", "down")
    assert "stopped the worker" in down.stdout, down.stdout + down.stderr


@pytest.fixture(scope="module")
def deployed(stack: PrefectStack) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    with stack.client() as client:  # before init: the server found the blocks through the entry point
        assert client.read_block_type_by_slug("agentic-sandbox-settings").name == "Agentic Sandbox Settings"
    init = stack.run("agentic", "init")
    stack.env["AGENTIC_NIGHTLY_REPO"] = NIGHTLY_REPO  # test-and-report/nightly refuses to deploy without it
    deploy = stack.run("prefect", "--no-prompt", "deploy", "--all")
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    return init, deploy


def _submitted_id(output: str) -> UUID:
    return UUID(re.search(r"\(([0-9a-f-]{36})\)", output).group(1))  # type: ignore[union-attr]


def test_from_a_fresh_clone_init_deploy_and_submit_run_a_plan_end_to_end(  # type: ignore[no-untyped-def]
        stack, deployed, make_repo, tmp_path) -> None:
    init, _ = deployed
    assert init.returncode == 0, init.stdout + init.stderr
    for line in ("block agentic-sandbox-settings/default: created", "block agentic-tool-policy/default: created",
                 "block agentic-budget/default: created", "block agentic-llm-endpoint/default: no defaults",
                 "work pool agentic-docker: created"):
        assert line in init.stdout, init.stdout
    with stack.client() as client:
        deployments_read = client.read_deployments()
        deployments = {f"{client.read_flow(d.flow_id).name}/{d.name}" for d in deployments_read}
        nightly = client.read_deployment_by_name("test-and-report/nightly")
    assert deployments == DEPLOYMENTS
    registered = stack.run("prefect", "block", "register", "-m", "prefect_agentic.blocks")
    for name in ("Agentic Budget", "Agentic LLM Endpoint", "Agentic Sandbox Settings", "Agentic Tool Policy"):
        assert name in registered.stdout, registered.stdout + registered.stderr
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert nightly.parameters == {"repo": NIGHTLY_REPO}
    assert {d.entrypoint for d in deployments_read} == {
        "prefect_agentic.flows.run_plan:run_plan", *(f"prefect_agentic.flows.recipes:{name}" for name in (
            "fix_lint", "test_and_report", "triage_failure", "open_pull_request", "upgrade_dependency",
            "generate_tests", "security_scan"))}
    assert all(d.pull_steps == [] for d in deployments_read)

    repo = make_repo({"test_ok.py": "def test_ok():\n    assert True\n"})
    (tmp_path / "tiny.yaml").write_text(TINY)
    submit = stack.run("agentic", "submit", str(tmp_path / "tiny.yaml"), "--repo", str(repo),
                       "--sandbox-block", "default", "--wait", "--timeout", "240")
    assert submit.returncode == 0, submit.stdout + submit.stderr + stack.home.joinpath("agentic/stack/worker.log").read_text()
    flow_run_id = _submitted_id(submit.stdout)
    assert f"http://127.0.0.1:{stack.port}/runs/flow-run/{flow_run_id}" in submit.stdout.splitlines()
    assert submit.stdout.splitlines()[-1] == "flow run tiny v1: Say hello and run the tests: Completed"

    with stack.client() as client:
        flow_run = client.read_flow_run(flow_run_id)
    assert flow_run.parameters["plan"]["id"] == "tiny"
    assert flow_run.parameters["sandbox"]["block_type_slug"] == "agentic-sandbox-settings"
    workspace = stack.home / "agentic" / "workspaces" / run_key("tiny", repo, resolve_base(repo, "HEAD"))
    with mounted(workspace):  # the run unmounted its workspace when it ended
        shown = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(workspace), "show",
                                "refs/agentic/snapshots/tiny/hello:out.txt"], check=False, capture_output=True,
                               text=True)
    assert shown.stdout == "hello\n", shown.stderr


def test_parameters_that_do_not_fit_the_flow_are_refused_before_a_run_is_made(  # type: ignore[no-untyped-def]
        stack, deployed, make_repo, tmp_path) -> None:
    """`agentic submit` checks the parameters as the flow run would (the server's own check is skipped)."""
    repo = make_repo({"f": "x"})
    (tmp_path / "tiny.yaml").write_text(TINY)

    def flow_runs() -> int:
        with stack.client() as client:
            return len(client.read_flow_runs(limit=200))

    before = flow_runs()
    for param, named in (("fresh=maybe", "fresh: Input should be a valid boolean"),
                         ("fersh=true", "'fersh'"),
                         ("sandbox={memory: 12}", "sandbox.memory")):
        bad = stack.run("agentic", "submit", str(tmp_path / "tiny.yaml"), "--repo", str(repo), "--param", param)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert "parameters for deployment 'run-plan/default' do not fit flow 'run-plan'" in bad.stderr
        assert named in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    assert flow_runs() == before
    with stack.client() as client:  # the deployed schema is this flow's: the check was made here, not on the server
        target = client.read_deployment_by_name("run-plan/default")
    assert check_parameters_here(target, "run-plan/default", {"plan": parse_plan(TINY).model_dump(mode="json"),
                                                              "repo": str(repo)})


def test_a_paused_run_finishes_its_own_plan_after_the_pack_is_upgraded(  # type: ignore[no-untyped-def]
        stack, deployed, make_repo, tmp_path) -> None:
    repo = make_repo({"f": "x"})
    plan_file = tmp_path / "gated.yaml"
    plan_file.write_text(GATED)
    submit = stack.run("agentic", "submit", str(plan_file), "--repo", str(repo),
                       "--param", "loop={escalate: true, escalation_poll_seconds: 1}")
    assert submit.returncode == 0, submit.stdout + submit.stderr
    flow_run_id = _submitted_id(submit.stdout)
    wait_for_state(stack, flow_run_id, {"Paused"}, timeout=240)

    # The upgrade: the plan file and the deployment's own default plan now say something else.
    upgraded = yaml.safe_load(GATED)
    upgraded["steps"] = [{"id": "replaced", "tool": "shell", "args": {"command": "true"}}]
    plan_file.write_text(yaml.safe_dump(upgraded))
    config = yaml.safe_load((stack.checkout / "prefect.yaml").read_text())
    config["deployments"][0]["parameters"] = {"plan": upgraded, "repo": str(repo)}
    (stack.checkout / "prefect.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    redeploy = stack.run("prefect", "--no-prompt", "deploy", "--name", "run-plan/default")
    assert redeploy.returncode == 0, redeploy.stdout + redeploy.stderr

    workspace = stack.home / "agentic" / "workspaces" / run_key("gated", repo, resolve_base(repo, "HEAD"))
    (workspace / ".agentic" / "go-ahead").touch()
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        resume_flow_run(flow_run_id, run_input={"action": "retry"})
    finished = wait_for_state(stack, flow_run_id, {"Completed", "Failed", "Crashed"}, timeout=120)
    assert finished.state.name == "Completed", stack.home.joinpath("agentic/stack/worker.log").read_text()[-3000:]

    with stack.client() as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        deployment = client.read_deployment_by_name("run-plan/default")
    assert sorted(t.name for t in tasks) == ["after", "check", "check", "prepare"]
    assert [s["id"] for s in finished.parameters["plan"]["steps"]] == ["prepare", "check", "after"]
    assert [s["id"] for s in deployment.parameters["plan"]["steps"]] == ["replaced"]


AFTER_UPGRADE = """
id: after-upgrade
goal: Write a file with the upgraded pack
steps:
  - {id: notes, tool: shell, args: {command: "echo notes > NOTES.md"}}
"""
# The upgrade: in the new version of the pack a step writes the workspace unless it says otherwise.
WRITES_DEFAULT = ('    writes_workspace: bool = Field(\n        default=False,',
                  '    writes_workspace: bool = Field(\n        default=True,')


def _snapshot_steps(stack: PrefectStack, plan_id: str, repo) -> set[str]:  # type: ignore[no-untyped-def]
    """The steps of ``plan_id`` on ``repo`` that committed a workspace snapshot."""
    workspace = stack.home / "agentic" / "workspaces" / run_key(plan_id, repo, resolve_base(repo, "HEAD"))
    with mounted(workspace):  # the run unmounted its workspace when it ended
        refs = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(workspace), "for-each-ref",
                               "--format=%(refname)", f"refs/agentic/snapshots/{plan_id}/"],
                              check=True, capture_output=True, text=True).stdout.split()
    return {ref.rsplit("/", 1)[1] for ref in refs}


def test_a_suspended_run_resumed_by_an_upgraded_worker_finishes_its_stored_plan(  # type: ignore[no-untyped-def]
        stack, deployed, make_repo, tmp_path) -> None:
    repo = make_repo({"README.md": "x\n"})
    (tmp_path / "ship.yaml").write_text(SHIP)
    submit = stack.run("agentic", "submit", str(tmp_path / "ship.yaml"), "--repo", str(repo),
                       "--sandbox-block", "default")
    assert submit.returncode == 0, submit.stdout + submit.stderr
    flow_run_id = _submitted_id(submit.stdout)
    suspended = wait_for_state(stack, flow_run_id, {"Suspended"}, timeout=240)
    models = stack.checkout / "prefect_agentic" / "plan" / "models.py"
    original = models.read_text()
    assert WRITES_DEFAULT[0] in original
    models.write_text(original.replace(*WRITES_DEFAULT))
    try:
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            resume_flow_run(flow_run_id, run_input={"decision": "approve", "approver": "ada"})
        finished = wait_for_state(stack, flow_run_id, {"Completed", "Failed", "Crashed", "Suspended"},
                                  timeout=120)
        assert finished.state.name == "Completed", "the resumed run did not finish its stored plan"
        assert finished.state.id != suspended.state.id
        with stack.client() as client:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        assert sorted((t.name.split("-")[0], t.state.name) for t in tasks) == [
            ("notes", "Cached"), ("notes", "Completed"), ("publish", "Completed")]
        # The stored plan says publish does not write; the upgraded default would have made it write.
        assert [s["writes_workspace"] for s in finished.parameters["plan"]["steps"]] == [True, False]
        assert _snapshot_steps(stack, "ship-deployed", repo) == {"notes"}

        (tmp_path / "after.yaml").write_text(AFTER_UPGRADE)
        after = stack.run("agentic", "submit", str(tmp_path / "after.yaml"), "--repo", str(repo),
                          "--sandbox-block", "default", "--wait", "--timeout", "120")
        assert after.returncode == 0, after.stdout + after.stderr
        assert _snapshot_steps(stack, "after-upgrade", repo) == {"notes"}
    finally:
        models.write_text(original)


def test_named_limits_are_created_on_demand_and_bound_concurrent_holders(stack: PrefectStack) -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def hold() -> None:
        nonlocal running, peak
        with temporary_settings({PREFECT_API_URL: stack.api_url}), \
                holding({"agentic-test-sandboxes": 2}, lease_seconds=60):
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.3)
            with lock:
                running -= 1

    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        threads = [threading.Thread(target=hold) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        started = time.monotonic()
        for _ in range(4):
            wait_for_rate("agentic-llm-test", per_minute=120)  # a burst of 2, then 2 a second
        rate_elapsed = time.monotonic() - started
    with stack.client() as client:
        limit = client.read_global_concurrency_limit_by_name("agentic-test-sandboxes")
        rate = client.read_global_concurrency_limit_by_name("agentic-llm-test")
    assert peak == 2
    assert (limit.limit, limit.active_slots) == (2, 0)
    assert (rate.limit, rate.slot_decay_per_second) == (2, 2.0)
    assert rate_elapsed >= 0.7, rate_elapsed
