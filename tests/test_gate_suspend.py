"""A deployed flow run suspends at its gate (no process waits) and, once approved, is started
again by the deployment's runner and goes on from the top on cached steps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import resume_flow_run

from prefect_agentic.plan import parse_plan

SHIP = """
id: ship-deployed
goal: Ship the release notes
steps:
  - {id: notes, tool: shell, writes_workspace: true, args: {command: "echo notes > NOTES.md"}}
  - {id: publish, tool: shell, depends_on: [notes], requires_approval: true, args: {command: "cat NOTES.md"}}
"""
SERVE = """
from prefect import serve
from prefect.deployments.runner import EntrypointType
from prefect_agentic.flows.run_plan import run_plan
serve(run_plan.to_deployment(name="gates-suspend", entrypoint_type=EntrypointType.MODULE_PATH))
"""


def _flow_run(run_id: UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def _wait_for(run_id: UUID, done: object, what: str, within: float = 120) -> FlowRun:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        run = _flow_run(run_id)
        if run.state and done(run):  # type: ignore[operator]
            return run
        time.sleep(0.5)
    raise AssertionError(f"flow run never {what}; last state {run.state}")


@pytest.mark.usefixtures("prefect_api")
def test_a_deployed_run_suspends_and_the_runner_finishes_it_after_approval(make_repo, sandbox_image) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    runner = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    repo = make_repo({"README.md": "x\n"})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                flow_run = run_deployment(
                    "run-plan/gates-suspend", timeout=0,
                    parameters={"plan": parse_plan(SHIP).model_dump(mode="json"),
                                "repo": str(repo),
                                "sandbox": {"image": sandbox_image}})
                break
            except ObjectNotFound:  # the runner has not registered the deployment yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        suspended = _wait_for(flow_run.id, lambda r: r.state.is_paused(), "paused")
        assert suspended.state.name == "Suspended"
        assert suspended.state.state_details.pause_key.startswith("approve-publish-")
        resume_flow_run(flow_run.id, run_input={"decision": "approve", "approver": "ada"})
        finished = _wait_for(flow_run.id, lambda r: r.state.is_final(), "finished")
        assert finished.state.is_completed(), finished.state
        with get_client(sync_client=True) as client:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
        states = sorted((t.name.split("-")[0], t.state.name) for t in tasks)
        assert states == [("notes", "Cached"), ("notes", "Completed"), ("publish", "Completed")]
    finally:
        runner.terminate()
        runner.wait(timeout=30)
