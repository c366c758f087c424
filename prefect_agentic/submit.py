"""Submitting a plan to a deployment: the flow run is made on the server, a worker runs it.

The plan travels as the flow run's ``plan`` parameter, so the server keeps the
exact plan the run executes: a worker that picks the run up later, or retries
it after a crash, runs that plan whatever version of the pack it has.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.blocks.core import Block
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.exceptions import (
    FlowRunWaitTimeout,
    ObjectNotFound,
    ParameterTypeError,
    SignatureMismatchError,
)
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL
from prefect.states import Scheduled, to_state_create

from prefect_agentic.errors import DeploymentError, SubmissionParameterError
from prefect_agentic.gates.notice import WaitingNotice, notice_for
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
    still reads the plan exactly as it was submitted. Parameters that do not
    fit the deployment's flow raise ``SubmissionParameterError`` naming them,
    and no flow run is made.
    """
    values = {"plan": plan.model_dump(mode="json"), "repo": repo, "ref": ref,
              **(parameters or {})}
    with get_client(sync_client=True) as client:
        try:
            target = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            raise DeploymentError(
                f"no deployment '{deployment}' on the Prefect API; run `prefect deploy --all` in a "
                f"checkout of prefect-agentic first") from None
        checked = check_parameters_here(target, deployment, values)
        return _create_flow_run(client, target, values, server_check=not checked)


def check_parameters_here(target: DeploymentResponse, name: str, values: dict[str, Any]) -> bool:
    """Validate ``values`` as the flow run will when it starts; True if done here.

    Why here and not on the server: the server checks a flow run's parameters
    against the deployment's JSON schema, and first checks that schema itself
    against the JSON Schema meta-schema, for every flow run. ``run-plan``'s
    schema is 32 KB (plans, sandbox, policy, budget, audit storage...), so that
    check cost the server ~90 ms of CPU per submitted run, more than the rest
    of making the run (``bench/scale_out.py``). The flows of this pack are
    importable wherever the pack is, so the check the flow run itself makes
    (pydantic, against the flow's signature) runs here instead, and its error
    reaches the submitter at once. Other deployments, a deployment made from
    another version of the flow (its schema differs from the one here), and
    parameters the server fills in (``__prefect_kind`` values) keep the
    server's check.
    """
    flow = _pack_flow(target.entrypoint)
    merged = {**(target.parameters or {}), **values}
    if (flow is None or _needs_hydration(merged)
            or flow.parameters.model_dump_for_openapi() != target.parameter_openapi_schema):
        return False
    try:
        with _quiet("prefect.flows"):  # it logs the error it raises; the caller reports it once
            flow.validate_parameters(merged)
    except (ParameterTypeError, SignatureMismatchError) as exc:
        raise SubmissionParameterError(f"parameters for deployment '{name}' do not fit flow "
                                       f"'{flow.name}': {exc}") from None
    return True


def _pack_flow(entrypoint: str | None) -> Flow[..., Any] | None:
    """The flow a ``prefect_agentic.<module>:<flow>`` entrypoint names; None for any other entrypoint."""
    module, _, attribute = (entrypoint or "").partition(":")
    if not module.startswith("prefect_agentic.") or not attribute:
        return None
    try:
        flow = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return None  # a flow of another pack version: the server checks
    return flow if isinstance(flow, Flow) else None


def _needs_hydration(values: Any) -> bool:
    if isinstance(values, dict):
        return "__prefect_kind" in values or any(_needs_hydration(v) for v in values.values())
    if isinstance(values, list):
        return any(_needs_hydration(v) for v in values)
    return False


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def _create_flow_run(client: SyncPrefectClient, target: DeploymentResponse, values: dict[str, Any], *,
                     server_check: bool) -> FlowRun:
    """``POST /deployments/{id}/create_flow_run``, scheduled now; without the server's parameter
    check when ``server_check`` is False (Prefect's client has no argument for that field)."""
    create = DeploymentFlowRunCreate(parameters=values, state=to_state_create(Scheduled()))
    if not server_check:
        create.enforce_parameter_schema = False
    response = client.request("POST", "/deployments/{id}/create_flow_run", path_params={"id": target.id},
                              json=create.model_dump(mode="json", exclude_unset=True))
    return FlowRun.model_validate(response.json())


def flow_run_url(flow_run_id: UUID) -> str | None:
    """The flow run's page in the Prefect UI (None when the API has no UI address)."""
    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def wait_for(flow_run_id: UUID, timeout: int, *, on_gate: Callable[[WaitingNotice], None] | None = None,
             poll_interval: float = 2) -> FlowRun:
    """Wait until the flow run is final; returns it with its final state.

    Each time the run starts waiting at an approval gate, ``on_gate`` gets the
    gate's notice (once per gate, however long it waits). ``FlowRunWaitTimeout``
    after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    told: set[str] = set()
    with get_client(sync_client=True) as client:
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            state = flow_run.state
            if state is not None and state.is_final():
                return flow_run
            key = state.state_details.pause_key if state is not None and state.is_paused() else None
            if on_gate is not None and key and key not in told:
                notice = notice_for(flow_run)
                if notice is not None:
                    told.add(key)
                    on_gate(notice)
            if time.monotonic() > deadline:
                raise FlowRunWaitTimeout(f"flow run {flow_run_id} did not end within {timeout}s")
            time.sleep(poll_interval)
