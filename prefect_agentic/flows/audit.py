"""The audit trail of one ``run-plan`` flow run: its log, events and artifacts.

``RunAudit.open`` makes the run's audit log the run's recorder (with Prefect
events and the progress artifact as its observers) and records
``run_started``: every id of the run, the plan with its planner, the sandbox
image digest and settings, the tool versions, policy and budget. ``finished``
records ``run_finished`` (status, usage) and publishes the summary artifacts.

A flow run that suspends at an approval gate records ``run_suspended`` (not a
crash); the process that runs it again (resumed on any worker, or retried after
a crash, possibly with a newer pack) goes on with the same log and records
``run_resumed`` (after what, which process, which pack version) instead of a
second ``run_started``: one chain per flow run.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from importlib.metadata import version
from typing import Any

from prefect.runtime import flow_run as flow_run_runtime

from prefect_agentic.blocks.audit_storage import AuditStorage
from prefect_agentic.executor import RunContext, run_resources
from prefect_agentic.flows.artifacts import ProgressArtifact, publish_run_artifacts
from prefect_agentic.plan.models import Plan
from prefect_agentic.record.audit import AuditLog, AuditRecord, Observer
from prefect_agentic.record.events import EventEmitter, RunIds
from prefect_agentic.record.store import AuditStore, log_path
from prefect_agentic.report import RunReport
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.workspace import Workspace

logger = logging.getLogger("prefect_agentic.audit")


class RunAudit:
    """Everything a run leaves for later: see the module docstring."""

    def __init__(self, log: AuditLog, run: RunContext, records: list[AuditRecord]) -> None:
        self.log = log
        self.run = run
        self.records = records
        self.meter = run_resources(run).meter

    @classmethod
    def open(cls, plan: Plan, run: RunContext, ids: RunIds, storage: AuditStorage | None,
             **started: Any) -> RunAudit:
        """Start the run's log; ``started`` (repo, ref, fresh…) goes into ``run_started``."""
        store = AuditStore(storage)
        records: list[AuditRecord] = []
        observers: list[Observer] = [records.append, EventEmitter(ids)]
        try:
            observers.append(ProgressArtifact(plan.id, [s.id for s in plan.steps]))
        except Exception:  # no progress bar is no reason to stop a run
            logger.exception("could not create the progress artifact")
        log = AuditLog(store, ids.flow_run_id, observers)
        records.extend(log.previous)
        resources = run_resources(run)
        resources.recorder = log
        if log.previous:
            log.record("run_resumed", _resumed(log.previous[-1], run, resources.sandbox.image_id))
            return cls(log, run, records)
        registry = default_registry()
        log.record("run_started", {
            "flow_run_id": ids.flow_run_id, "run_key": ids.run_key, "plan_id": plan.id,
            "plan_version": plan.version, "request_id": ids.request_id, **started,
            "base_snapshot": run.base_snapshot, "workspace": str(run.workspace),
            "workspace_epoch": run.workspace_epoch, "image": run.sandbox.image,
            "image_id": resources.sandbox.image_id,
            "tools": {s.tool: registry.get(s.tool).version for s in plan.steps},
            "prefect_agentic": version("prefect-agentic"),
            "planner": plan.planner.model_dump(mode="json") if plan.planner else None,
            "plan": plan.model_dump(mode="json", exclude_defaults=True),
            "sandbox": run.sandbox.model_dump(mode="json", exclude={"docker_host"}),
            "policy": run.policy.model_dump(mode="json"),
            "budget": run.budget.model_dump(mode="json"),
            "secrets": sorted(run.secrets),
        })
        return cls(log, run, records)

    def location(self) -> str:
        return f"{self.log.store.describe()}/{log_path(self.log.flow_run_id)}"

    def finished(self, report: RunReport) -> None:
        status = "completed" if report.ok else "stopped" if report.stopped and not any(
            s.status.value == "failed" for s in report.steps) else "failed"
        diff_stat = self._diff_stat(report)
        self.log.record("run_finished", {
            "status": status, "stopped": report.stopped, "final_snapshot": report.final_snapshot,
            "plan_version": report.plan_version, "duration_s": report.duration_s,
            "diff_stat": diff_stat, "steps": {s.step_id: s.status.value for s in report.steps},
            "usage": {name: round(used, 3) for name, used in self.meter.used.items()},
        })
        publish_run_artifacts(report, self.records, status=status, diff_stat=diff_stat,
                              audit_head=self.log.head, audit_location=self.location())

    def crashed(self, exc: BaseException) -> None:
        """The run ended with an error of its own (not a step's): recorded, then re-raised by the caller."""
        self.log.record("run_finished", {
            "status": "crashed", "error_kind": type(exc).__name__, "error": str(exc),
            "usage": {name: round(used, 3) for name, used in self.meter.used.items()},
        })

    def suspended(self, pause_key: str | None, until: datetime | None) -> None:
        """The flow run suspended at a gate (its process ends; a worker starts it again once answered)."""
        asked = next((r for r in reversed(self.records)
                      if r.kind == "approval_requested" and r.data.get("gate") == pause_key), None)
        self.log.record("run_suspended", {
            "gate": pause_key, "until": until.isoformat() if until else None,
            "usage": {name: round(used, 3) for name, used in self.meter.used.items()},
        }, step_id=asked.step if asked else None)

    def _diff_stat(self, report: RunReport) -> str:
        try:
            workspace = Workspace(self.run.workspace)
            return workspace.changes(report.base_snapshot, report.final_snapshot).stat_line()
        except Exception:  # the workspace is only read for the summary
            logger.exception("could not read the run's diff stat")
            return "-"


def _resumed(last: AuditRecord, run: RunContext, image_id: str | None) -> dict[str, Any]:
    """What ``run_resumed`` says: after which record, in which process, with which pack."""
    after = last.data.get("status") if last.kind == "run_finished" else None
    return {
        "after": last.kind if after is None else f"{last.kind}:{after}",
        "after_seq": last.seq, "run_count": flow_run_runtime.run_count,
        "host": socket.gethostname(), "pid": os.getpid(), "prefect_agentic": version("prefect-agentic"),
        "image": run.sandbox.image, "image_id": image_id, "workspace_epoch": run.workspace_epoch,
    }
