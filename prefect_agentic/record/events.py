"""Prefect events derived from audit records, in this one place.

Every event of a run comes from a record that is already stored, so events
never tell something the audit log does not. The run is the primary resource
(``prefect-agentic.run.<flow run id>``); the flow run, plan and request are
related resources, so an automation can match on any of them.

| record | event |
|---|---|
| ``run_started`` | ``prefect-agentic.run.started`` |
| ``run_finished`` | ``prefect-agentic.run.<status>`` (completed, failed, stopped, crashed) |
| ``attempt_started`` | ``prefect-agentic.step.started`` |
| ``step_finished`` | ``prefect-agentic.step.<status>`` (completed, cached, failed, not_run) |
| ``approval`` | ``prefect-agentic.approval.<decision>`` (or the escalation's action) |
| ``policy_decision`` (denied) | ``prefect-agentic.policy.denied`` |
| ``budget`` (warning, exhausted) | ``prefect-agentic.budget.warning`` / ``.exhausted`` |
| ``plan`` (a revision) | ``prefect-agentic.plan.revised`` |
| ``version_switch`` | ``prefect-agentic.run.versions-<outcome>`` (switched, stopped) |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.events import emit_event

from prefect_agentic.record.audit import AuditRecord

EVENT_PREFIX = "prefect-agentic"


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
    """The event a record stands for, or None when it is not an event of its own."""
    data, kind = record.data, record.kind
    if kind == "run_started":
        return f"{EVENT_PREFIX}.run.started"
    if kind in ("run_suspended", "run_resumed"):
        return f"{EVENT_PREFIX}.run.{kind.removeprefix('run_')}"
    if kind == "approval_requested":
        return f"{EVENT_PREFIX}.approval.requested"
    if kind == "run_finished":
        return f"{EVENT_PREFIX}.run.{data.get('status', 'finished')}"
    if kind == "attempt_started":
        return f"{EVENT_PREFIX}.step.started"
    if kind == "step_finished":
        return f"{EVENT_PREFIX}.step.{data.get('status', 'finished')}"
    if kind == "approval":
        answer = data.get("answer") if isinstance(data.get("answer"), dict) else {}
        decision = data.get("decision") or answer.get("action") or "unanswered"
        return f"{EVENT_PREFIX}.approval.{decision}"
    if kind == "policy_decision" and data.get("allowed") is False:
        return f"{EVENT_PREFIX}.policy.denied"
    if kind == "budget" and data.get("event") in ("warning", "exhausted"):
        return f"{EVENT_PREFIX}.budget.{data['event']}"
    if kind == "plan":
        return f"{EVENT_PREFIX}.plan.revised"
    if kind == "version_switch":
        return f"{EVENT_PREFIX}.run.versions-{data.get('outcome', 'switched')}"
    if kind == "chaos_fault":
        return f"{EVENT_PREFIX}.chaos.{data.get('kind', 'fault')}"
    return None


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
    """The record's data without the bulky parts (whole plans), plus where it sits in the log."""
    data = {k: v for k, v in record.data.items() if k not in ("plan", "output")}
    return {"step": record.step, "seq": record.seq, "record_hash": record.hash, **data}
