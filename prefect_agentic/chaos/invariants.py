"""Invariants of a chaos run, checked on its audit records: pure functions, no I/O.

Each check takes what a run left behind (its audit log lines or records, its
final state, the clean re-run's records) and returns the violations it found
as ``Violation``s; an empty list means the invariant held. The campaign
(``prefect_agentic.chaos.campaign``) gathers the inputs; keeping the checks
apart from it makes every check testable on hand-built records that break it.
"""

from __future__ import annotations

from collections import Counter
from enum import Enum

from pydantic import BaseModel

from prefect_agentic.record.audit import AuditRecord, verify
from prefect_agentic.stats import RunFacts, add_audit

TERMINAL_STATUSES = frozenset({"completed", "failed", "stopped"})
"""``run_finished`` statuses that end a run as designed (``crashed`` is the run's own error)."""
FINAL_FLOW_STATES = frozenset({"Completed", "Failed"})
"""States a flow run that ended by itself may be in (``Crashed`` is the run's own error)."""
KILLED_FLOW_STATES = FINAL_FLOW_STATES | {"Crashed"}
"""States a flow run whose process ``process_kill`` ended may be in: it never reported its end, so it
is Crashed once the campaign marks it (or it ended just before the kill landed)."""

DELAY_KINDS = frozenset({"latency_before", "latency_after", "api_latency"})
"""Fault kinds that only delay the attempt they hit; the others may end it (or be survived by it)."""
API_ERROR_KINDS = frozenset({"api_error"})
"""Fault kinds on a Prefect API request: absorbed when Prefect's client retry got a real answer
(``chaos_api_outcome``); otherwise the run's status says whether the error was survived."""
RESUMED_KINDS = frozenset({"process_kill"})
"""Fault kinds that end the run's process: the run is recovered when running it again (``resumed``) completed."""
ANSWER_KINDS = frozenset({"llm_malformed"})
"""Fault kinds on a model's answer: a validation retry (a new answer) recovers them, whose ``attempt`` is
the answer's number; with no step (the re-planner), the run's status says whether they were survived."""


class Invariant(str, Enum):
    terminal = "terminal"
    """The run ended in a terminal state within the bound."""
    no_reexecution = "no_reexecution"
    """No step that completed was executed again (later attempts, or the clean re-run, are cache hits)."""
    no_concurrent_attempts = "no_concurrent_attempts"
    """No step had two attempts running at once."""
    audit_verifies = "audit_verifies"
    """The run's audit log verifies (hashes, chain, ends with run_finished)."""
    same_final_snapshot = "same_final_snapshot"
    """The clean re-run ends on the fault-free reference run's final snapshot."""
    no_leftover_containers = "no_leftover_containers"
    """No container with the run's labels is left afterwards."""
    no_leftover_environments = "no_leftover_environments"
    """No ephemeral service environment the run's process made is left afterwards."""
    failures_classified = "failures_classified"
    """Every failed step has a failure mode in ``agentic stats`` (none is ``unknown``)."""


class Violation(BaseModel):
    invariant: Invariant
    detail: str
    step: str | None = None


def check_terminal(records: list[AuditRecord], *, final_state: str | None, elapsed_s: float,
                   bound_s: float, killed: bool = False) -> list[Violation]:
    """The log ends with a terminal ``run_finished``, the flow run is final, and it took at most ``bound_s``.

    A run whose process ``process_kill`` ended (``killed``) could write no ``run_finished``, so its log
    is not asked for one; its flow run must be final all the same (``KILLED_FLOW_STATES``), or Prefect
    would show it running for ever.
    """
    found = [] if killed else _log_ended(records)
    if killed and final_state not in KILLED_FLOW_STATES:
        found.append(Violation(invariant=Invariant.terminal,
                               detail=f"the killed run's flow run is in state {final_state}, not a final one"))
    elif not killed and final_state is not None and final_state not in FINAL_FLOW_STATES:
        found.append(Violation(invariant=Invariant.terminal, detail=f"the flow run ended in state {final_state}"))
    if elapsed_s > bound_s:
        found.append(Violation(invariant=Invariant.terminal,
                               detail=f"the run took {elapsed_s:.1f} s, over the bound of {bound_s:.0f} s"))
    return found


def _log_ended(records: list[AuditRecord]) -> list[Violation]:
    """The log's last record is a ``run_finished`` with a terminal status."""
    last = records[-1] if records else None
    status = last.data.get("status") if last is not None and last.kind == "run_finished" else None
    if status in TERMINAL_STATUSES:
        return []
    ended = f"run_finished status {status!r}" if status else f"last record {last.kind if last else 'none'}"
    return [Violation(invariant=Invariant.terminal, detail=f"the run did not end in a terminal state ({ended})")]


def completed_steps(records: list[AuditRecord]) -> set[str]:
    """Steps that ended completed or cached in this log."""
    return {r.step for r in records if r.kind == "step_finished" and r.step
            and r.data.get("status") in ("completed", "cached")}


def check_no_reexecution(records: list[AuditRecord], rerun: list[AuditRecord] | None = None) -> list[Violation]:
    """After a step's attempt finished ``ok``, no attempt of it starts again, in this run or the clean re-run."""
    found: list[Violation] = []
    done: dict[str, int] = {}
    for record in records:
        if not record.step:
            continue
        if record.kind == "attempt_started" and record.step in done:
            found.append(Violation(invariant=Invariant.no_reexecution, step=record.step,
                                   detail=f"attempt {record.data.get('attempt')} started (seq {record.seq}) after "
                                          f"the step completed (seq {done[record.step]})"))
        elif record.kind == "attempt_finished" and record.data.get("outcome") == "ok":
            done.setdefault(record.step, record.seq)
    if rerun is not None:
        completed = completed_steps(records)
        for record in rerun:
            if record.kind == "attempt_started" and record.step in completed:
                found.append(Violation(invariant=Invariant.no_reexecution, step=record.step,
                                       detail="the clean re-run executed the step again instead of a cache hit"))
    return found


def check_no_concurrent_attempts(records: list[AuditRecord]) -> list[Violation]:
    """No ``attempt_started`` of a step while an earlier attempt of it has not finished."""
    found: list[Violation] = []
    running: dict[str, int] = {}
    for record in records:
        if not record.step or record.kind not in ("attempt_started", "attempt_finished"):
            continue
        attempt = record.data.get("attempt")
        if record.kind == "attempt_started":
            if record.step in running:
                found.append(Violation(invariant=Invariant.no_concurrent_attempts, step=record.step,
                                       detail=f"attempt {attempt} started while attempt "
                                              f"{running[record.step]} was still running"))
            running[record.step] = attempt
        elif running.get(record.step) == attempt:
            del running[record.step]
    return found


def check_audit_verifies(lines: list[bytes], *, complete: bool = True) -> list[Violation]:
    """The log verifies as ``agentic audit verify`` checks it (hashes, chain and, with ``complete``,
    the closing ``run_finished``; a killed run's log has none, its re-run's must)."""
    result = verify(lines)
    found = [Violation(invariant=Invariant.audit_verifies, detail=problem) for problem in result.problems]
    if not lines:
        found.append(Violation(invariant=Invariant.audit_verifies, detail="the run left no audit log"))
    elif complete and not result.complete:
        found.append(Violation(invariant=Invariant.audit_verifies, detail="the log does not end with run_finished"))
    return found


def check_same_final_snapshot(rerun_snapshot: str | None, reference_snapshot: str) -> list[Violation]:
    if rerun_snapshot == reference_snapshot:
        return []
    return [Violation(invariant=Invariant.same_final_snapshot,
                      detail=f"the clean re-run ended on {rerun_snapshot}, the fault-free run on {reference_snapshot}")]


def check_no_leftover_containers(names: list[str]) -> list[Violation]:
    return [Violation(invariant=Invariant.no_leftover_containers, detail=f"container {name} is left")
            for name in names]


def check_no_leftover_environments(names: list[str]) -> list[Violation]:
    return [Violation(invariant=Invariant.no_leftover_environments, detail=f"ephemeral environment {name} is left")
            for name in names]


def check_failures_classified(records: list[AuditRecord]) -> list[Violation]:
    """Every failed step is counted under a failure mode by ``agentic stats`` (the same reading of the log)."""
    facts = RunFacts(flow_run_id="", workflow="", status="")
    add_audit(facts, records)
    failed = [s["step"] for s in facts.steps if s.get("status") == "failed"]
    return [Violation(invariant=Invariant.failures_classified, step=step,
                      detail="the step failed with no error kind recorded: `agentic stats` counts it as unknown")
            for step, kind in zip(failed, facts.failure_kinds) if kind == "unknown"]


class FaultOutcomes(BaseModel):
    """What the faults of one kind did in one run (or summed over runs)."""

    injected: int = 0
    recovered: int = 0
    """A fault that failed its attempt, whose step completed on a later attempt."""
    failed_cleanly: int = 0
    """A fault that failed its attempt, whose step did not complete (the invariants say whether cleanly)."""
    absorbed: int = 0
    """A fault whose attempt still succeeded (a latency, a kill after the command ended), or a latency."""
    violations: int = 0
    """Invariant violations in runs this kind was injected into."""

    def add(self, other: FaultOutcomes) -> None:
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def fault_outcomes(records: list[AuditRecord], violations: int, *,
                   resumed: str | None = None) -> dict[str, FaultOutcomes]:
    """Per fault kind: injected, recovered by retry, failed cleanly, absorbed; from one run's records.

    A fault whose attempt still succeeded was absorbed (a latency always is); one that failed its
    attempt was recovered if its step completed later, else it failed cleanly. A malformed model
    answer counts as recovered when its step (or, for the re-planner, the run) completed. An injected
    API error is absorbed when Prefect's client retry got a real answer, else recovered or failed
    cleanly as the run completed or not.
    """
    status = {r.step: r.data.get("status") for r in records if r.kind == "step_finished" and r.step}
    run_status = next((r.data.get("status") for r in records if r.kind == "run_finished"), None)
    attempt_ok = {(r.step, r.data.get("attempt")) for r in records
                  if r.kind == "attempt_finished" and r.data.get("outcome") == "ok"}
    reached = {r.data.get("request"): r.data.get("tries") for r in records
               if r.kind == "chaos_api_outcome" and r.data.get("outcome") == "reached_caller"}
    outcomes: dict[str, FaultOutcomes] = {}
    for record in records:
        if record.kind != "chaos_fault":
            continue
        kind = str(record.data.get("kind"))
        counts = outcomes.setdefault(kind, FaultOutcomes())
        counts.injected += 1
        if kind in RESUMED_KINDS:  # the run died: recovered if running it again completed
            if resumed == "completed":
                counts.recovered += 1
            else:
                counts.failed_cleanly += 1
        elif kind in API_ERROR_KINDS:  # absorbed by Prefect's retry, or it reached the run: did the run complete?
            if reached.get(record.data.get("request")) != record.data.get("attempt"):  # a later try got through
                counts.absorbed += 1
            elif run_status == "completed":
                counts.recovered += 1
            else:
                counts.failed_cleanly += 1
        elif kind in DELAY_KINDS or (kind not in ANSWER_KINDS and (record.step, record.data.get("attempt")) in attempt_ok):
            counts.absorbed += 1
        elif (status.get(record.step) if record.step else run_status) == "completed":
            counts.recovered += 1
        else:
            counts.failed_cleanly += 1
    for counts in outcomes.values():
        counts.violations = violations
    return outcomes


def violation_counts(violations: list[Violation]) -> Counter[str]:
    return Counter(v.invariant.value for v in violations)
