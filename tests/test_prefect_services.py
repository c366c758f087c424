"""The suite's own end: a Prefect service that never finishes cannot hang the test process."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prefect._internal.concurrency.services import QueueService
from prefect_services import drain


class NeverAnswers(QueueService[str]):
    """A service whose every item waits on something that never comes (like a dead connection)."""

    handling = threading.Event()

    async def _handle(self, item: str) -> None:
        NeverAnswers.handling.set()
        await asyncio.Event().wait()


def test_a_service_stuck_on_an_item_is_cancelled_and_named_so_the_process_can_end() -> None:
    service = NeverAnswers.instance()
    service.send("an event")
    assert NeverAnswers.handling.wait(30)

    with pytest.warns(UserWarning, match=r"1 Prefect service\(s\) had not finished 1 s") as caught:
        drain(timeout=1)

    assert "NeverAnswers: _run" in str(caught[0].message) and "_handle" in str(caught[0].message)
    assert service._done_event.is_set()  # what a later drain, and interpreter exit, wait for
    assert service.drain() is False  # returns at once: nothing left to wait for
