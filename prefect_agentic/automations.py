"""Automations that find flow runs whose worker died and run them again.

A worker killed with SIGKILL takes its flow-run processes with it; nobody
tells the server, and the runs stay Running. Flow runs send heartbeat events
(``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, default 180 s), so a Prefect
automation marks a run Crashed when they stop, and a second one puts a
crashed run back to ``AwaitingRetry``: a worker picks the same flow run up
again, with the same plan (its parameter), and the steps that completed come
back from the cache. Both act only on runs tagged ``agentic`` (the
deployments of ``prefect.yaml``).
"""

from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture

RUN_TAG = "agentic"
CRASH_DETECTOR = "agentic: silent flow runs are crashed"
CRASH_RETRY = "agentic: crashed flow runs are retried"
_STARTING = {"prefect.flow-run.Pending", "prefect.flow-run.Submitting", "prefect.flow-run.Running"}
_FINAL_OR_WAITING = {"prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                     "prefect.flow-run.Crashed", "prefect.flow-run.Paused", "prefect.flow-run.Suspended"}


def crash_automations(silence_seconds: float) -> list[Automation]:
    """The two automations; ``silence_seconds`` without a heartbeat means the run is dead.

    The detector expects a sign of life (a heartbeat, the next starting state, a
    final or waiting state) within ``silence_seconds`` of the run being taken by
    a worker, of each step of its start, and of each heartbeat.
    """
    ours = {"prefect.resource.id": f"prefect.tag.{RUN_TAG}"}
    runs = {"prefect.resource.id": "prefect.flow-run.*"}
    detector = Automation(
        name=CRASH_DETECTOR,
        description=f"A flow run tagged '{RUN_TAG}' that sent no heartbeat for {silence_seconds:g} s "
                    "(its worker or process died) is marked Crashed.",
        trigger=EventTrigger(
            # armed when a worker takes the run too: one killed before its first heartbeat (even
            # while its process was still starting) is found as well
            match=runs, match_related=ours, after={"prefect.flow-run.heartbeat", *_STARTING},
            expect={"prefect.flow-run.heartbeat", *_STARTING, *_FINAL_OR_WAITING},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive, threshold=1, within=timedelta(seconds=silence_seconds)),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED, name="Crashed",
            message=f"no heartbeat for {silence_seconds:g} s: the worker or flow-run process died")],
    )
    retry = Automation(
        name=CRASH_RETRY,
        description=f"A crashed flow run tagged '{RUN_TAG}' is scheduled again (AwaitingRetry); "
                    "completed steps come back from the cache.",
        trigger=EventTrigger(match=runs, match_related=ours, expect={"prefect.flow-run.Crashed"},
                             for_each={"prefect.resource.id"}, posture=Posture.Reactive, threshold=1),
        actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry",
                                    message="retry after a crash")],
    )
    return [detector, retry]


def ensure_crash_automations(silence_seconds: float = 600) -> dict[str, str]:
    """Create the automations that are missing (by name); returns name → outcome."""
    outcome = {}
    for automation in crash_automations(silence_seconds):
        try:
            Automation.read(name=automation.name)
            outcome[automation.name] = "kept"
        except ValueError:  # not found
            automation.create()
            outcome[automation.name] = "created"
    return outcome
