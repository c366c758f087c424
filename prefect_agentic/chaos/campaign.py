"""A chaos campaign: a plan run N times with seeded faults, each run checked against the invariants.

First a fault-free reference run (``fresh``) fixes the final snapshot every
run must reach. Then, for run *i*, the plan runs ``fresh`` with the spec's
faults under seed ``seed + i``, and once more without faults and without
``fresh``: that clean re-run must take every step the chaos run completed
from the cache, execute every other one, and end on the reference snapshot.
The reference run, and each chaos run with its re-run, work on a throwaway
clone of the repository (same base commit), so each has a workspace and a
step-cache epoch of its own: no other run of the campaign answers their steps
from its cache. Snapshot commits are deterministic, so their final snapshots
compare across workspaces. Clones and workspaces are removed afterwards; the
audit logs stay. Each flow run has a Prefect
``timeout_seconds`` of ``bound_s``, so a hung run ends (TimedOut) and is
reported instead of hanging the campaign. The checks themselves are the
pure functions of ``prefect_agentic.chaos.invariants``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

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
from prefect_agentic.workspace import (
    clone_at,
    remove_workspace,
    resolve_base,
    run_key,
    run_workspace,
)

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
"""How a chaos run whose process was SIGKILLed ended; its flow run, which nobody told, is then marked
Crashed by the campaign when the log names a ``process_kill`` (``Campaign._end_killed``)."""


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
    """Runs ``plan`` on clones of ``repo`` at ``ref`` through ``run_plan`` in this process (on whatever API
    is configured); ``repo`` itself is only read."""

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
        base = resolve_base(self.repo, self.ref)
        with self._own_clone(base) as repo:
            reference = self._run(repo, base, chaos=None, fresh=True)
        snapshot = _final_snapshot(reference.records)
        if reference.state != "Completed" or snapshot is None:
            raise CampaignError(f"the fault-free reference run {reference.flow_run_id} ended {reference.state}: "
                                "a plan must succeed without faults before faults can be judged")
        self.progress(f"reference run {reference.flow_run_id}: {reference.state}, final snapshot {snapshot[:12]}")
        report = CampaignReport(plan_id=self.plan.id, seed=seed, bound_s=self.bound_s,
                                reference_flow_run_id=reference.flow_run_id, reference_snapshot=snapshot,
                                reference_elapsed_s=round(reference.elapsed_s, 3))
        for index in range(runs):
            with self._own_clone(base) as repo:
                outcome = self._chaos_run(repo, base, index, spec.model_copy(update={"seed": seed + index}), snapshot)
            self.progress(f"run {index + 1}/{runs} (seed {seed + index}) {outcome.flow_run_id}: {outcome.status}, "
                          f"{sum(f.injected for f in outcome.faults.values())} fault(s), "
                          f"{len(outcome.violations)} violation(s)")
            report.runs.append(outcome)
        return report

    @contextmanager
    def _own_clone(self, base: str) -> Iterator[Path]:
        """A throwaway clone of the repository holding ``base``, for the runs of one trial.

        The run key includes the repository's path, so the runs on the clone have a workspace and a
        cache epoch of their own (same plan and base: the same snapshots). Afterwards the clone and
        that workspace are removed; a workspace that cannot be (it stays mounted) is said in progress.
        """
        scratch = Path(tempfile.mkdtemp(prefix="agentic-chaos-"))
        repo = scratch / "repo.git"
        try:
            clone_at(self.repo, base, repo)
            yield repo
        finally:
            problem = remove_workspace(run_workspace(run_key(self.plan.id, repo, base)))
            if problem is not None:
                self.progress(f"the workspace of a chaos trial could not be removed: {problem}")
            shutil.rmtree(scratch, ignore_errors=True)

    def _chaos_run(self, repo: Path, base: str, index: int, spec: ChaosSpec, reference_snapshot: str) -> RunOutcome:
        """Chaos run ``index`` and its clean re-run on ``repo`` at ``base``, checked against the invariants."""
        chaos = (self._run_killable(repo, base, spec) if spec.process_kills
                 else self._run(repo, base, chaos=spec, fresh=True))
        killed = chaos.state == KILLED
        records = chaos.records
        final_state = self._end_killed(chaos.flow_run_id, records) if killed else chaos.state
        # What the chaos run left, taken before the re-run: opening the re-run's sandbox removes every
        # container of the run key, a leak included. A killed process removed nothing: its leftovers are
        # expected until the re-run (its resume) removes them, so for it the check after the re-run stands.
        left_by_chaos = [] if killed else self._leftovers(records)
        rerun = self._run(repo, base, chaos=None, fresh=False)  # after a kill: resuming it, as a user does
        rerun_records = rerun.records
        violations = [
            # a killed run's log cannot end (it must chain, and its re-run end: checked below); its flow run must
            *inv.check_terminal(records, final_state=final_state, elapsed_s=chaos.elapsed_s, bound_s=self.bound_s,
                                killed=killed),
            *inv.check_no_reexecution(records, rerun_records),
            *inv.check_no_concurrent_attempts(records),
            *inv.check_audit_verifies(chaos.lines, complete=not killed),
            *left_by_chaos,
            *inv.check_failures_classified(records),
            *inv.check_terminal(rerun_records, final_state=rerun.state, elapsed_s=rerun.elapsed_s,
                                bound_s=self.bound_s),
            *inv.check_audit_verifies(rerun.lines),
            *inv.check_same_final_snapshot(_final_snapshot(rerun_records), reference_snapshot),
            *self._leftovers(rerun_records, reported=left_by_chaos),
        ]
        return RunOutcome(index=index, seed=spec.seed, flow_run_id=chaos.flow_run_id,
                          rerun_flow_run_id=rerun.flow_run_id,
                          status="killed" if killed else _status(records) or chaos.state,
                          elapsed_s=round(chaos.elapsed_s, 3), violations=violations,
                          faults=inv.fault_outcomes(records, len(violations), resumed=_status(rerun_records)))

    def _run_killable(self, repo: Path, ref: str, spec: ChaosSpec) -> _Finished:
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
                       "--repo", str(repo), "--ref", ref,
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

    def _end_killed(self, flow_run_id: str, records: list[AuditRecord]) -> str | None:
        """Mark Crashed the flow run of a process a ``process_kill`` ended; its state's name then.

        The process that would report its end is dead; only a crash automation watching heartbeats
        (a server's, e.g. ``agentic init``'s) would mark it, and a flow run such an automation already
        ended is left as it is. Only a kill the run's log explains is marked, naming the fault; a flow
        run SIGKILLed by something else stays as it is, for the terminal invariant to report.
        """
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        if not flow_run_id:  # killed before its log began: no flow run to mark (audit_verifies says so)
            return None
        fault = next((r for r in records if r.kind == "chaos_fault" and r.data.get("kind") == "process_kill"), None)
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(UUID(flow_run_id))
            if fault is not None and not (flow_run.state and flow_run.state.is_final()):
                message = (f"the run's process was killed (SIGKILL) by the chaos fault process_kill in step "
                           f"{fault.step}, attempt {fault.data.get('attempt')}, seed {fault.data.get('seed')}")
                # forced: the flow run's own process is gone, no orchestration rule has anything to protect
                client.set_flow_run_state(UUID(flow_run_id), Crashed(message=message), force=True)
                flow_run = client.read_flow_run(UUID(flow_run_id))
        return flow_run.state.name if flow_run.state else None

    def _run(self, repo: Path, ref: str, *, chaos: ChaosSpec | None, fresh: bool) -> _Finished:
        from prefect_agentic.flows.run_plan import run_plan

        flow = run_plan.with_options(task_runner=ThreadPoolTaskRunner(max_workers=self.concurrency),
                                     timeout_seconds=self.bound_s)
        started = time.monotonic()
        state = flow(plan=self.plan, repo=str(repo), ref=ref, sandbox=self.sandbox, fresh=fresh,
                     policy=self.policy, chaos=chaos, return_state=True)
        elapsed = time.monotonic() - started
        flow_run_id = str(state.state_details.flow_run_id)
        lines = self.store.read_log(flow_run_id) if self.store.has_log(flow_run_id) else []
        return _Finished(flow_run_id=flow_run_id, state=state.name or state.type.value, lines=lines,
                         elapsed_s=elapsed)

    def _leftovers(self, records: list[AuditRecord], *,
                   reported: list[inv.Violation] | None = None) -> list[inv.Violation]:
        """Containers of the run's key and ephemeral environments of this process that are still there.

        A run removes its own whatever happens, so any is a leak. ``reported``: violations already found
        after the chaos run; an environment nothing removes in between is not counted twice.
        """
        seen = {v.detail for v in reported or []}
        found = [*inv.check_no_leftover_containers(self._leftover_containers(records)),
                 *inv.check_no_leftover_environments(self._leftover_environments())]
        return [v for v in found if v.detail not in seen]

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
