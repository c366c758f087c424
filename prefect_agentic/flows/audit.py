"""The audit trail of one ``run-plan`` flow run: its log, events and artifacts.

``RunAudit.open`` makes the run's audit log the run's recorder (with Prefect
events and the progress artifact as its observers) and records
``run_started``: every id of the run, the plan with its planner, the sandbox
image digest and settings, the tool versions, policy and budget. ``finished``
records ``run_finished`` (status, usage) and publishes the summary artifacts.
``anchor`` hands the log's head to Prefect, apart from the log, when a process
of the run ends, however it ends (finished, crashed, suspended at a gate,
stopped at a version pin): ``agentic audit verify`` compares the log with the
latest one, so a rewritten or cut-off log of any run shows.

A flow run that suspends at an approval gate records ``run_suspended`` (not a
crash); the process that runs it again (resumed on any worker, or retried after
a crash, possibly with a newer pack) goes on with the same log and records
``run_resumed`` (after what, which process, which pack version) instead of a
second ``run_started``: one chain per flow run. The versions the run pinned
(``run_started``'s ``pins``) are read back from the log then, never computed
again; a pinned version the worker lacks is handled by the run's upgrade
policy and recorded as ``version_switch`` (``prefect_agentic.pins``).
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from typing import Any

from prefect.runtime import flow_run as flow_run_runtime

from prefect_agentic.blocks.audit_storage import AuditStorage
from prefect_agentic.executor import RunContext, run_redactor, run_resources
from prefect_agentic.flows.artifacts import (
    ProgressArtifact,
    publish_audit_anchor,
    publish_run_artifacts,
)
from prefect_agentic.pins import (
    DEFAULT_UPGRADE_POLICY,
    RunPins,
    UpgradePolicy,
    VersionPinError,
    pack_version,
    pins_for_new_run,
    pins_from_run_started,
    pins_with_revisions,
    resolve_pins,
)
from prefect_agentic.plan.models import Plan
from prefect_agentic.record.audit import AuditLog, AuditRecord, Observer
from prefect_agentic.record.events import EventEmitter, RunIds
from prefect_agentic.record.store import AuditStore, log_path
from prefect_agentic.report import RunReport
from prefect_agentic.sandbox.runner import inspect_image
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.workspace import Workspace

logger = logging.getLogger("prefect_agentic.audit")


class RunAudit:
    """Everything a run leaves for later: see the module docstring."""

    def __init__(self, log: AuditLog, run: RunContext, records: list[AuditRecord],
                 progress: ProgressArtifact) -> None:
        self.log = log
        self.run = run
        self.records = records
        self.progress = progress
        self.meter = run_resources(run).meter

    @classmethod
    def open(cls, plan: Plan, run: RunContext, ids: RunIds, storage: AuditStorage | None,
             on_upgrade: UpgradePolicy = DEFAULT_UPGRADE_POLICY, **started: Any) -> RunAudit:
        """Start the run's log; ``started`` (repo, ref, fresh…) goes into ``run_started``.

        The run's versions are pinned here (``prefect_agentic.pins``): a new run pins what is
        installed, a resumed one reads its pins from its log and checks them under ``on_upgrade``
        (``VersionPinError``, recorded, when it must stop). ``self.run`` is the run with its pins.
        """
        store = AuditStore(storage)
        records: list[AuditRecord] = []
        progress = ProgressArtifact(plan.id, [s.id for s in plan.steps])
        observers: list[Observer] = [records.append, EventEmitter(ids), progress]
        log = AuditLog(store, ids.flow_run_id, observers, redactor=run_redactor(run))
        records.extend(log.previous)
        first = log.previous[0] if log.previous else None
        if first is not None and first.kind == "run_started":
            pins = pins_with_revisions(pins_from_run_started(first.data),
                                       [r.data for r in log.previous if r.kind == "plan"])
            run = _resume_pinned(log, run, pins, on_upgrade)
            return cls(log, run, records, progress)
        registry = default_registry()
        image = inspect_image(run.sandbox, run.sandbox.image)  # None: opening the sandbox names the problem
        pins = pins_for_new_run(plan, registry, run.sandbox.image, image.id if image else None,
                                image.repo_digests if image else None)
        run = run.model_copy(update={"pins": pins, "tool_versions": dict(pins.tools), "image_id": pins.image_id})
        resources = run_resources(run)
        resources.recorder = log
        log.record("run_started", {
            "flow_run_id": ids.flow_run_id, "run_key": ids.run_key, "plan_id": plan.id,
            "plan_version": plan.version, "request_id": ids.request_id, **started,
            "base_snapshot": run.base_snapshot, "workspace": str(run.workspace),
            "workspace_epoch": run.workspace_epoch, "image": run.sandbox.image,
            "image_id": resources.sandbox.image_id,
            "tools": dict(pins.tools),
            "prefect_agentic": pins.pack,
            "pins": pins.model_dump(mode="json"),
            "on_upgrade": on_upgrade,
            "planner": plan.planner.model_dump(mode="json") if plan.planner else None,
            "plan": plan.model_dump(mode="json", exclude_defaults=True),
            "sandbox": run.sandbox.model_dump(mode="json", exclude={"docker_host"}),
            "policy": run.policy.model_dump(mode="json"),
            "budget": run.budget.model_dump(mode="json"),
            "secrets": sorted(run.secrets),
        })
        return cls(log, run, records, progress)

    def anchor(self) -> None:
        """Publish the log's head as it stands; the run calls it as its process ends, however it ends."""
        publish_audit_anchor(self.run.plan_id, self.log.anchor())

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

    def crashed(self, exc: BaseException) -> BaseException:
        """The run ended with an error of its own (not a step's): recorded; returns it redacted, for the
        caller to raise (Prefect stores and logs the text of the error a flow run ends with)."""
        error = self.log.redactor.exception(exc)
        self.log.record("run_finished", {
            "status": "crashed", "error_kind": type(exc).__name__, "error": str(error),
            "usage": {name: round(used, 3) for name, used in self.meter.used.items()},
        })
        return error

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


def _resume_pinned(log: AuditLog, run: RunContext, pins: RunPins, on_upgrade: UpgradePolicy) -> RunContext:
    """The resumed run with its pins, after ``run_resumed`` (and ``version_switch`` when something
    pinned is gone); a run that must stop records why and raises ``VersionPinError``."""
    last = log.previous[-1]
    try:
        resolution = resolve_pins(
            pins, default_registry(), on_upgrade,
            image_exists=lambda ref: inspect_image(run.sandbox, ref) is not None,
            current_image_id=lambda: getattr(inspect_image(run.sandbox, run.sandbox.image), "id", None))
    except VersionPinError as exc:
        log.record("run_resumed", _resumed(last, run, pins.image_id))
        switches = [s.model_dump(mode="json") for s in exc.switches]
        log.record("version_switch", {"policy": on_upgrade, "outcome": "stopped", "switches": switches,
                                      "pack": pack_version()})
        log.record("run_finished", {"status": "stopped", "stopped": str(exc), "error_kind": type(exc).__name__,
                                    "error": str(exc), "usage": {}})
        publish_audit_anchor(run.plan_id, log.anchor())  # the process ends here, before the run has a trail
        raise
    run = run.model_copy(update={"pins": pins, "tool_versions": resolution.tool_versions,
                                 "image_id": resolution.image_id})
    resources = run_resources(run)
    resources.recorder = log
    log.record("run_resumed", _resumed(last, run, resources.sandbox.image_id))
    if resolution.switches:
        for switch in resolution.switches:
            logger.warning("upgrade policy 'upgrade': %s; the run goes on with the installed version", switch.text())
        log.record("version_switch", {"policy": on_upgrade, "outcome": "switched", "pack": pack_version(),
                                      "switches": [s.model_dump(mode="json") for s in resolution.switches]})
    return run


def _resumed(last: AuditRecord, run: RunContext, image_id: str | None) -> dict[str, Any]:
    """What ``run_resumed`` says: after which record, in which process, with which pack."""
    after = last.data.get("status") if last.kind == "run_finished" else None
    return {
        "after": last.kind if after is None else f"{last.kind}:{after}",
        "after_seq": last.seq, "run_count": flow_run_runtime.run_count,
        "host": socket.gethostname(), "pid": os.getpid(), "prefect_agentic": pack_version(),
        "image": run.sandbox.image, "image_id": image_id, "workspace_epoch": run.workspace_epoch,
    }
