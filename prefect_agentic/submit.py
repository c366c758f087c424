"""Submitting a plan to a deployment: the flow run is made on the server, a worker runs it.

The plan travels as the flow run's ``plan`` parameter, so the server keeps the
exact plan the run executes: a worker that picks the run up later, or retries
it after a crash, runs that plan whatever version of the pack it has.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.blocks.core import Block
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import wait_for_flow_run
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL
from prefect.utilities.asyncutils import run_coro_as_sync

from prefect_agentic.errors import DeploymentError
from prefect_agentic.plan.models import Plan

DEFAULT_DEPLOYMENT = "run-plan/default"


def block_values(kind: type[Block], name: str) -> dict[str, Any]:
    """The saved block ``name`` as a flow parameter value (its fields, not a reference).

    Like the plan, the settings are then the flow run's own: editing the block
    later does not change a run already submitted. (A ``$ref`` to a block whose
    fields all have defaults is also rejected by the server's parameter check:
    it matches both the reference and the block schema.) The pack's sandbox,
    policy and budget blocks hold no secret fields.
    """
    try:
        block = kind.load(name)
    except (ValueError, ObjectNotFound):
        raise DeploymentError(
            f"no {kind.get_block_type_name()} block named '{name}' on the Prefect API "
            f"(`agentic init` creates 'default'; `prefect block ls` lists them)") from None
    return block.model_dump(mode="json")


def require_server() -> str:
    """The configured Prefect API; ``DeploymentError`` when there is none.

    Without ``PREFECT_API_URL`` Prefect would start a throw-away API inside this
    process: the flow run would be created there, no worker would ever see it,
    and it would vanish when the command ends.
    """
    api = PREFECT_API_URL.value()
    if not api:
        raise DeploymentError(
            "no Prefect server configured: a submitted run goes to a server's workers; set "
            "PREFECT_API_URL (or start one with `agentic up`), or run the plan here with `agentic run`")
    return api


def submit_plan(plan: Plan, repo: str, *, ref: str = "HEAD", deployment: str = DEFAULT_DEPLOYMENT,
                parameters: dict[str, Any] | None = None) -> FlowRun:
    """Create a flow run of ``deployment`` for ``plan`` on ``repo`` (a path the worker can read).

    The plan is stored whole, defaults included: a worker with a newer pack
    whose defaults differ (resuming a suspended run, or retrying a crashed one)
    still reads the plan exactly as it was submitted.
    """
    values = {"plan": plan.model_dump(mode="json"), "repo": repo, "ref": ref,
              **(parameters or {})}
    try:
        return run_deployment(deployment, parameters=values, timeout=0)  # type: ignore[return-value]
    except ObjectNotFound:
        raise DeploymentError(
            f"no deployment '{deployment}' on the Prefect API; run `prefect deploy --all` in a "
            f"checkout of prefect-agentic first") from None


def flow_run_url(flow_run_id: UUID) -> str | None:
    """The flow run's page in the Prefect UI (None when the API has no UI address)."""
    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def wait_for(flow_run_id: UUID, timeout: int) -> FlowRun:
    """Wait until the flow run is final; returns it with its final state."""
    return run_coro_as_sync(wait_for_flow_run(flow_run_id, timeout=timeout, poll_interval=2))
