"""Prefect events derived from audit records, in this one place.

Every event of a run comes from a record that is already stored, so events
never tell something the audit log does not. ``EVENTS`` is the table of every
event the pack emits: ``event_name`` reads it to name a record's event, and the
docs' events reference is generated from it (``scripts/docs_reference.py``), so
what runs emit and what the reference lists are one list. The run is the primary
resource (``prefect-agentic.run.<flow run id>``); the flow run, plan and request
are related resources, so an automation can match on any of them (``RunIds``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect.events import emit_event

from prefect_agentic.chaos.spec import FaultKind
from prefect_agentic.record.audit import AuditRecord
from prefect_agentic.record.progress import StepStatus

EVENT_PREFIX = "prefect-agentic"

LEFT_OUT_OF_PAYLOAD = ("plan", "output")
"""Record fields an event's payload leaves out: whole plans and step outputs are bulky,
and the audit log (the payload's ``seq`` and ``record_hash`` point at the record) has them."""


@dataclass(frozen=True)
class EventSpec:
    """One event, or a family of events named after a value of the record they come from."""

    record: str
    """The kind of audit record the event comes from."""
    name: str
    """The name after ``prefect-agentic.``; ``{}`` stands for the value under the record's ``key``."""
    meaning: str
    key: str = ""
    """The record data's key (dotted: a key of a nested object) whose value completes ``name``;
    a record without a value there is not this event."""
    values: tuple[str, ...] = ()
    """Every value the pack writes under ``key``, so that the reference names each event."""
    when: Mapping[str, Any] = field(default_factory=dict)
    """Keys and values a record's data must have to be this event (a denied ``policy_decision``)."""

    def event_of(self, data: Mapping[str, Any]) -> str | None:
        """The event name for a record of kind ``record`` with ``data``, or None if it is not this event."""
        if any(data.get(name) != wanted for name, wanted in self.when.items()):
            return None
        if not self.key:
            return f"{EVENT_PREFIX}.{self.name}"
        value = _lookup(data, self.key)
        return None if value is None else f"{EVENT_PREFIX}.{self.name.format(value)}"

    def names(self) -> list[str]:
        """Every full event name this entry stands for."""
        if not self.key:
            return [f"{EVENT_PREFIX}.{self.name}"]
        return [f"{EVENT_PREFIX}.{self.name.format(value)}" for value in self.values]


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


_LIVE_STEP_STATUSES = (StepStatus.PENDING, StepStatus.RUNNING)
"""Statuses a step shows while the run goes on (progress, the CLI's table), never how it ended."""

EVENTS: tuple[EventSpec, ...] = (
    EventSpec("run_started", "run.started", "A run began: its first process opened the run's audit log."),
    EventSpec("attempt_started", "step.started",
              "An attempt of a step started; a retried step has one per attempt, a cached step none."),
    EventSpec("step_finished", "step.{}", "A step ended: it ran, came from the step cache, failed its last "
              "attempt, or did not run (a dependency failed, a gate refused, the run stopped).",
              key="status", values=tuple(s.value for s in StepStatus if s not in _LIVE_STEP_STATUSES)),
    EventSpec("approval_requested", "approval.requested",
              "A gate began waiting for a human; the payload has `ui_url` and `approve_command`, "
              "for automations that notify people."),
    EventSpec("run_suspended", "run.suspended",
              "The flow run suspended at a gate: its process ends, and a worker starts it again once "
              "the gate is answered. A suspended run has not finished."),
    EventSpec("run_resumed", "run.resumed",
              "A later process of the flow run (after an answered suspension, or a crash and retry) "
              "continued its audit log; the payload says after which record, where, and with which pack."),
    EventSpec("approval", "approval.{}",
              "A gate's decision: approve (by a human, the tool policy or an earlier answer: `source`), "
              "reject, request_changes, or timeout (no answer in time, which counts as a rejection). "
              "An answer that could not be used has `usable: false` and is asked again.",
              key="decision", values=("approve", "reject", "request_changes", "timeout")),
    EventSpec("approval", "approval.{}",
              "A human answered the agent loop's escalation of a failure it could not fix.",
              key="answer.action", values=("retry", "skip", "abort", "instruct"),
              when={"gate": "escalation"}),
    EventSpec("approval", "approval.unanswered",
              "Nobody answered the agent loop's escalation in time; the run stops.",
              when={"gate": "escalation", "answer": None}),
    EventSpec("policy_decision", "policy.denied",
              "The tool policy denied a tool call, or a step changed a protected path; that attempt fails.",
              when={"allowed": False}),
    EventSpec("budget", "budget.{}",
              "A run budget reached its warning fraction (`warn_at`), or a hard limit (the attempt "
              "that went over fails and no further step starts). Records of LLM spending are no events.",
              key="event", values=("warning", "exhausted")),
    EventSpec("plan", "plan.revised",
              "The plan was revised during the run (by the planner after a failure, or after a gate "
              "asked for changes); the payload has the version, the reason and the replaced steps."),
    EventSpec("version_switch", "run.versions-{}",
              "A resumed run found a version it pinned gone: it switched to the installed one "
              "(`on_upgrade: upgrade`) or stopped (`pinned`).",
              key="outcome", values=("switched", "stopped")),
    EventSpec("chaos_fault", "chaos.{}",
              "A chaos run injected a fault of this kind, recorded before the fault acts.",
              key="kind", values=tuple(kind.value for kind in FaultKind)),
    EventSpec("run_finished", "run.{}",
              "A run ended: completed, failed (a step failed), stopped (ended early with no step failed: "
              "a gate's refusal, a budget limit, a pinned version gone…), or crashed (an error of the run "
              "itself, not of a step).",
              key="status", values=("completed", "failed", "stopped", "crashed")),
)
"""Every event the pack emits, about in the order of a run; for a record, the first entry
that matches names its event. A value the table does not list is emitted all the same (an
automation on a whole family should still see it); tests/test_docs.py checks that the table
lists every value the code writes."""


@dataclass(frozen=True)
class RunIds:
    """The ids that correlate everything a run leaves behind."""

    flow_run_id: str
    run_key: str
    plan_id: str
    request_id: str

    def resource(self, step: str | None) -> dict[str, str]:
        resource = {"prefect.resource.id": f"{EVENT_PREFIX}.run.{self.flow_run_id}",
                    "prefect.resource.name": self.plan_id,
                    f"{EVENT_PREFIX}.run-key": self.run_key,
                    f"{EVENT_PREFIX}.plan": self.plan_id,
                    f"{EVENT_PREFIX}.request": self.request_id}
        if step:
            resource[f"{EVENT_PREFIX}.step"] = step
        return resource

    def related(self) -> list[dict[str, str]]:
        return [
            {"prefect.resource.id": f"prefect.flow-run.{self.flow_run_id}",
             "prefect.resource.role": "flow-run"},
            {"prefect.resource.id": f"{EVENT_PREFIX}.plan.{self.plan_id}",
             "prefect.resource.role": "plan", "prefect.resource.name": self.plan_id},
            {"prefect.resource.id": f"{EVENT_PREFIX}.request.{self.request_id}",
             "prefect.resource.role": "request"},
        ]


def event_name(record: AuditRecord) -> str | None:
    """The event a record stands for (its ``EVENTS`` entry), or None when it is not an event of its own."""
    return next((name for spec in EVENTS if spec.record == record.kind
                 and (name := spec.event_of(record.data)) is not None), None)


class EventEmitter:
    """Audit observer: emits the record's event (if any) with the run's ids."""

    def __init__(self, ids: RunIds) -> None:
        self.ids = ids

    def __call__(self, record: AuditRecord) -> None:
        name = event_name(record)
        if name is None:
            return
        emit_event(event=name, resource=self.ids.resource(record.step), related=self.ids.related(),
                   occurred=record.at, payload=_payload(record))


def _payload(record: AuditRecord) -> dict[str, Any]:
    """The record's data without the bulky parts, plus where it sits in the log."""
    data = {k: v for k, v in record.data.items() if k not in LEFT_OUT_OF_PAYLOAD}
    return {"step": record.step, "seq": record.seq, "record_hash": record.hash, **data}
