"""A chaos campaign: a plan run N times with seeded faults, each run checked against the invariants.

First a fault-free reference run (``fresh``) fixes the final snapshot every
run must reach. Then, for run *i*, the plan runs ``fresh`` with the spec's
faults under seed ``seed + i``, and once more without faults and without
``fresh``: that clean re-run must take every step the chaos run completed
from the cache and end on the reference snapshot. Each flow run has a Prefect
``timeout_seconds`` of ``bound_s``, so a hung run ends (TimedOut) and is
reported instead of hanging the campaign. The checks themselves are the
pure functions of ``prefect_agentic.chaos.invariants``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.chaos import invariants as inv
from prefect_agentic.chaos.spec import ChaosSpec, Fault, FaultKind
from prefect_agentic.environments.labels import EPHEMERAL, environments, owner
from prefect_agentic.errors import AgenticError
from prefect_agentic.plan.models import Plan
from prefect_agentic.record.audit import AuditRecord, parse_log
from prefect_agentic.record.store import AuditStore
from prefect_agentic.sandbox.runner import LABEL_MANAGED, LABEL_RUN

DEFAULT_SPEC = ChaosSpec(faults=[
    Fault(kind=FaultKind.tool_exit, rate=0.5, attempts=[1]),
    Fault(kind=FaultKind.tool_timeout, rate=0.25, attempts=[1]),
    Fault(kind=FaultKind.latency_before, rate=0.5, seconds=0.5),
    Fault(kind=FaultKind.container_kill, rate=0.25, attempts=[1], seconds=0.0),
    Fault(kind=FaultKind.docker_unavailable, rate=0.25, attempts=[1], seconds=5.0),
])
"""Faults of ``agentic chaos`` without ``--chaos``: first attempts fail now and then (stood-in
failures, a killed container, a refusing engine), some calls wait."""


KILLED = "Killed"
"""The state of a chaos run whose process a ``process_kill`` ended (its flow run stays Running in Prefect)."""


class CampaignError(AgenticError):
    """The campaign could not establish its reference (the plan fails without faults)."""


class RunOutcome(BaseModel):
    """One chaos run, its clean re-run, and what the invariants found."""

    index: int
    seed: int
    flow_run_id: str
    rerun_flow_run_id: str
    status: str
    elapsed_s: float
    faults: dict[str, inv.FaultOutcomes] = Field(default_factory=dict)
    violations: list[inv.Violation] = Field(default_factory=list)


class CampaignReport(BaseModel):
    plan_id: str
    seed: int
    bound_s: float
    reference_flow_run_id: str
    reference_snapshot: str
    reference_elapsed_s: float = 0.0
    runs: list[RunOutcome] = Field(default_factory=list)

    @property
    def kinds(self) -> dict[str, inv.FaultOutcomes]:
        """Fault outcomes per kind, summed over the runs."""
        total: dict[str, inv.FaultOutcomes] = {}
        for run in self.runs:
            for kind, counts in run.faults.items():
                total.setdefault(kind, inv.FaultOutcomes()).add(counts)
        return dict(sorted(total.items()))

    @property
    def violations(self) -> list[inv.Violation]:
        return [v for run in self.runs for v in run.violations]

    @property
    def ok(self) -> bool:
        return not self.violations


class _Finished(BaseModel):
    """What one flow run left: its state's name, its audit log, how long it took."""

    flow_run_id: str
    state: str
    lines: list[bytes]
    elapsed_s: float

    @property
    def records(self) -> list[AuditRecord]:
        return parse_log(self.lines)


class Campaign:
    """Runs ``plan`` on ``repo`` through ``run_plan`` in this process (on whatever API is configured)."""

    def __init__(self, plan: Plan, repo: Path, *, ref: str = "HEAD", sandbox: SandboxSettings | None = None,
                 policy: ToolPolicy | None = None, concurrency: int = 4, bound_s: float = 600.0,
                 store: AuditStore | None = None, progress: Callable[[str], None] = lambda _: None,
                 plan_file: Path | None = None, sandbox_block: str | None = None,
                 policy_block: str | None = None) -> None:
        self.plan, self.repo, self.ref = plan, repo, ref
        self.plan_file = plan_file
        """The plan's file, for a chaos run in a process of its own (``process_kill``)."""
        self.sandbox_block, self.policy_block = sandbox_block, policy_block
        """Names of the saved blocks ``sandbox`` and ``policy`` came from, for a chaos run in a process of
        its own: it loads them again (``agentic run --sandbox-block/--policy-block``)."""
        self.sandbox = sandbox or SandboxSettings()
        self.policy = policy
        """The tool policy of every run (default: the built-in one), as ``agentic run --policy-block`` gives it."""
        self.concurrency, self.bound_s = concurrency, bound_s
        self.store = store or AuditStore()
        self.progress = progress

    def run(self, spec: ChaosSpec, *, runs: int, seed: int) -> CampaignReport:
        reference = self._run(chaos=None, fresh=True)
        snapshot = _final_snapshot(reference.records)
        if reference.state != "Completed" or snapshot is None:
            raise CampaignError(f"the fault-free reference run {reference.flow_run_id} ended {reference.state}: "
                                "a plan must succeed without faults before faults can be judged")
        self.progress(f"reference run {reference.flow_run_id}: {reference.state}, final snapshot {snapshot[:12]}")
        report = CampaignReport(plan_id=self.plan.id, seed=seed, bound_s=self.bound_s,
                                reference_flow_run_id=reference.flow_run_id, reference_snapshot=snapshot,
                                reference_elapsed_s=round(reference.elapsed_s, 3))
        for index in range(runs):
            outcome = self._chaos_run(index, spec.model_copy(update={"seed": seed + index}), snapshot)
            self.progress(f"run {index + 1}/{runs} (seed {seed + index}) {outcome.flow_run_id}: {outcome.status}, "
                          f"{sum(f.injected for f in outcome.faults.values())} fault(s), "
                          f"{len(outcome.violations)} violation(s)")
            report.runs.append(outcome)
        return report

    def _chaos_run(self, index: int, spec: ChaosSpec, reference_snapshot: str) -> RunOutcome:
        chaos = self._run_killable(spec) if spec.process_kills else self._run(chaos=spec, fresh=True)
        killed = chaos.state == KILLED
        rerun = self._run(chaos=None, fresh=False)  # after a kill: resuming it, as a user does (run it again)
        records, rerun_records = chaos.records, rerun.records
        violations = [
            # a killed run never ends by itself: its re-run must (checked below), its log must chain
            *([] if killed else inv.check_terminal(records, final_state=chaos.state, elapsed_s=chaos.elapsed_s,
                                                   bound_s=self.bound_s)),
            *inv.check_no_reexecution(records, rerun_records),
            *inv.check_no_concurrent_attempts(records),
            *inv.check_audit_verifies(chaos.lines, complete=not killed),
            # the killed process removed nothing: its containers must be gone once the re-run opened its sandbox
            *([] if killed else inv.check_no_leftover_containers(self._leftover_containers(records))),
            *inv.check_failures_classified(records),
            *inv.check_terminal(rerun_records, final_state=rerun.state, elapsed_s=rerun.elapsed_s,
                                bound_s=self.bound_s),
            *inv.check_audit_verifies(rerun.lines),
            *inv.check_same_final_snapshot(_final_snapshot(rerun_records), reference_snapshot),
            *inv.check_no_leftover_containers(self._leftover_containers(rerun_records)),
            *inv.check_no_leftover_environments(self._leftover_environments()),
        ]
        return RunOutcome(index=index, seed=spec.seed, flow_run_id=chaos.flow_run_id,
                          rerun_flow_run_id=rerun.flow_run_id,
                          status="killed" if killed else _status(records) or chaos.state,
                          elapsed_s=round(chaos.elapsed_s, 3), violations=violations,
                          faults=inv.fault_outcomes(records, len(violations), resumed=_status(rerun_records)))

    def _run_killable(self, spec: ChaosSpec) -> _Finished:
        """The chaos run as ``agentic run`` in a process of its own, which a ``process_kill`` may kill.

        It uses this process's Prefect API (the embedded one included), so it starts no API of its
        own that its death would leave behind. Its flow run is the one whose log appeared meanwhile.
        """
        from prefect.settings import PREFECT_API_URL

        api = PREFECT_API_URL.value()
        if not api:
            from prefect.server.api.server import SubprocessASGIServer

            api = SubprocessASGIServer().api_url
        with tempfile.TemporaryDirectory(prefix="agentic-chaos-") as scratch:
            plan_file = self.plan_file
            if plan_file is None:
                plan_file = Path(scratch) / "plan.json"
                plan_file.write_text(self.plan.model_dump_json(exclude_none=True))
            command = [sys.executable, "-m", "prefect_agentic.cli.main", "run", str(plan_file),
                       "--repo", str(self.repo), "--ref", self.ref,
                       *(["--sandbox-block", self.sandbox_block] if self.sandbox_block else []),
                       *(["--policy-block", self.policy_block] if self.policy_block else []),
                       "--image", self.sandbox.image,
                       "--mode", str(getattr(self.sandbox.mode, "value", self.sandbox.mode)), "--concurrency", str(self.concurrency),
                       "--fresh", "--json", "--chaos", spec.model_dump_json(exclude_defaults=True)]
            before = set(self.store.run_ids())
            started = time.monotonic()
            try:
                done = subprocess.run(command, env={**os.environ, "PREFECT_API_URL": api}, capture_output=True,
                                      timeout=self.bound_s, check=False)
                returncode = done.returncode
                if returncode not in (0, 1, -signal.SIGKILL):
                    self.progress(f"the chaos run's process exited {returncode}: "
                                  f"{done.stderr.decode(errors='replace')[-2000:]}")
            except subprocess.TimeoutExpired:
                returncode = None
            elapsed = time.monotonic() - started
        new = [run_id for run_id in self.store.run_ids() if run_id not in before]
        flow_run_id = next((run_id for run_id in new if any(
            r.kind == "run_started" and r.data.get("plan_id") == self.plan.id
            for r in parse_log(self.store.read_log(run_id)[:1]))), "")
        lines = self.store.read_log(flow_run_id) if flow_run_id else []
        state = (KILLED if returncode == -signal.SIGKILL else "TimedOut" if returncode is None
                 else "Completed" if returncode == 0 else "Failed")
        return _Finished(flow_run_id=flow_run_id, state=state, lines=lines, elapsed_s=elapsed)

    def _run(self, *, chaos: ChaosSpec | None, fresh: bool) -> _Finished:
        from prefect_agentic.flows.run_plan import run_plan

        flow = run_plan.with_options(task_runner=ThreadPoolTaskRunner(max_workers=self.concurrency),
                                     timeout_seconds=self.bound_s)
        started = time.monotonic()
        state = flow(plan=self.plan, repo=str(self.repo), ref=self.ref, sandbox=self.sandbox, fresh=fresh,
                     policy=self.policy, chaos=chaos, return_state=True)
        elapsed = time.monotonic() - started
        flow_run_id = str(state.state_details.flow_run_id)
        lines = self.store.read_log(flow_run_id) if self.store.has_log(flow_run_id) else []
        return _Finished(flow_run_id=flow_run_id, state=state.name or state.type.value, lines=lines,
                         elapsed_s=elapsed)

    def _leftover_containers(self, records: list[AuditRecord]) -> list[str]:
        """Containers still labelled with the run's key (the run removes them when it ends)."""
        key = next((r.data.get("run_key") for r in records if r.kind == "run_started"), None)
        if key is None:
            return []
        client = self.sandbox.docker_host.get_client()
        labels = [f"{LABEL_MANAGED}=true", f"{LABEL_RUN}={key}"]
        return [c.name for c in client.containers.list(all=True, filters={"label": labels})]


    def _leftover_environments(self) -> list[str]:
        """Ephemeral environments this process made that still exist (a run removes its own, whatever happens)."""
        client = self.sandbox.docker_host.get_client()
        mine = owner()
        return sorted(name for name, made_by in environments(client, kind=EPHEMERAL, with_owner=True).items()
                      if made_by == mine)


def _final_snapshot(records: list[AuditRecord]) -> str | None:
    finished = [r for r in records if r.kind == "run_finished"]
    return finished[-1].data.get("final_snapshot") if finished else None


def _status(records: list[AuditRecord]) -> str | None:
    finished = [r for r in records if r.kind == "run_finished"]
    return finished[-1].data.get("status") if finished else None
