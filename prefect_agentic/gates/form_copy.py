"""A copy of a suspended gate's answer form, kept with the flow run, and its restoration.

``suspend_flow_run`` first moves the flow run to Suspended, then saves the
form the Prefect UI renders (the run input schema). A flow-run process that
dies between the two leaves a run that cannot be answered at all: the server
refuses every resume ("Run input schema not found"), in the UI and from the
CLI, until the gate times out. So the gate saves a copy of the form under its
own keys first, and whoever finds a suspended gate without its form puts the
copy where Prefect expects it: ``agentic worker`` for the runs of its pool,
every ``FORM_CHECK_SECONDS`` (so an approver using only the UI is covered),
and the CLI (``agentic approvals``, ``approve``, ``reject``...) for any run.

A form is missing for a moment after every suspension, while the process
saves it, so a copy is only restored once the suspension is ``GRACE_SECONDS``
old: writing it first would make the live process's own save fail.
"""

from __future__ import annotations

from datetime import datetime, timezone
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateName,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import PrefectHTTPStatusError
from prefect.input import RunInput
from prefect.input.run_input import Keyset, keyset_from_base_key

GRACE_SECONDS = 10.0
"""How old a suspension must be before its missing form counts as lost."""
FORM_CHECK_SECONDS = 15.0
"""How often ``agentic worker`` looks for lost forms among its pool's suspended runs."""


def copy_keyset(pause_key: str) -> Keyset:
    """Where the copy of gate ``pause_key``'s form is kept (its schema and description)."""
    return keyset_from_base_key(f"gate-form-{pause_key}")


def save_form_copy(form: type[RunInput], pause_key: str, flow_run_id: UUID | None = None) -> None:
    """Keep a copy of ``form`` with the current flow run; call it before suspending.

    It is saved by Prefect's own ``RunInput.save``, so the copy is exactly
    what ``suspend_flow_run`` saves. A copy already there (the run asking
    again after a restart) is kept. ``flow_run_id``: another run than the current one.
    """
    try:
        form.save(copy_keyset(pause_key), flow_run_id=flow_run_id)
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 409:
            raise


def restore_lost_form(flow_run: FlowRun, *, grace_seconds: float = GRACE_SECONDS) -> bool:
    """Put back the form of a suspended gate whose process died before saving it; True if restored.

    Only a Suspended run at one of our gates (its pause key starts with
    ``approve-``) whose form has been missing for ``grace_seconds`` qualifies,
    and only when the gate left a copy.
    """
    state = flow_run.state
    if state is None or state.name != "Suspended":
        return False
    keyset, pause_key = state.state_details.run_input_keyset, state.state_details.pause_key
    if not keyset or not pause_key or not pause_key.startswith("approve-"):
        return False
    if (datetime.now(timezone.utc) - state.timestamp).total_seconds() < grace_seconds:
        return False
    with get_client(sync_client=True) as client:
        if stored_input(client, flow_run.id, keyset["schema"]) is not None:
            return False
        copy = copy_keyset(pause_key)
        schema = stored_input(client, flow_run.id, copy["schema"])
        if schema is None:
            return False
        for part, value in (("schema", schema), ("description", stored_input(client, flow_run.id, copy["description"]))):
            if value is not None:
                _create(client, flow_run, keyset[part], value)
    return True


def restore_lost_forms(work_pool: str) -> list[UUID]:
    """Restore every lost form among the suspended flow runs of ``work_pool``; their ids."""
    with get_client(sync_client=True) as client:
        suspended = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Suspended"]))),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[work_pool])))
    return [flow_run.id for flow_run in suspended if restore_lost_form(flow_run)]


def stored_input(client: SyncPrefectClient, flow_run_id: UUID, key: str) -> str | None:
    """The flow run's input ``key`` as stored (JSON text), or None when there is none."""
    try:
        return client.read_flow_run_input(flow_run_id, key)
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise
        return None


def _create(client: SyncPrefectClient, flow_run: FlowRun, key: str, value: str) -> None:
    """Store ``value`` (JSON text, as read) at ``key``; one written meanwhile by another reader stays."""
    try:
        client.create_flow_run_input(flow_run.id, key, value)
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 409:
            raise
