"""Reading back what a run left on the Prefect API: its events, and waiting for batched writes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from prefect.client.orchestration import get_client

T = TypeVar("T")


async def read_events(flow_run_id: str | UUID) -> list[dict[str, Any]]:
    """The events of the run (``prefect-agentic.run.<flow run id>``), at most 50, as the API returns them."""
    async with get_client() as client:
        response = await client._client.post("/events/filter", json={
            "filter": {"any_resource": {"id": [f"prefect-agentic.run.{flow_run_id}"]}}, "limit": 50})
        return list(response.json()["events"])


def eventually(read: Callable[[], T], check: Callable[[T], bool], within: float = 30) -> T:
    """Logs and events reach the API in batches: read until ``check`` holds (or time is up)."""
    deadline = time.monotonic() + within
    while True:
        found = read()
        if check(found) or time.monotonic() > deadline:
            return found
        time.sleep(1)
