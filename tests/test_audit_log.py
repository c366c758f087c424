"""The audit log on its own: hash chain, tamper checks, objects, storage blocks, approval records."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem

from prefect_agentic.blocks.audit_storage import AuditStorage
from prefect_agentic.errors import AuditError
from prefect_agentic.record.audit import GENESIS, AuditLog, parse_log, verify
from prefect_agentic.record.events import event_name
from prefect_agentic.record.store import BLOB_KEY, AuditStore, object_path
from prefect_agentic.stats import RunFacts, add_audit, compute, percentile, timing


def local_store(tmp_path: Path, **kwargs) -> AuditStore:  # type: ignore[no-untyped-def]
    return AuditStore(AuditStorage(filesystem=LocalFileSystem(basepath=str(tmp_path)), **kwargs))


def write_gated_run(store: AuditStore, run_id: str = "run-1") -> AuditLog:
    """A run whose step waited at an approval gate (records as the approval gates write them)."""
    log = AuditLog(store, run_id)
    log.record("run_started", {"flow_run_id": run_id, "plan_id": "deploy", "run_key": "deploy-1",
                               "request_id": "ticket-7"})
    log.record("approval", {"gate": "deploy:push", "decision": "approved", "who": "alice",
                            "when": "2026-01-01T10:00:00Z", "wait_seconds": 12.5, "reason": "looks right"},
               step_id="push")
    log.record("attempt_finished", {"attempt": 1, "outcome": "ok"}, step_id="push")
    log.record("step_finished", {"status": "completed", "attempts": 1, "cached": False, "duration_s": 2.0},
               step_id="push")
    log.record("approval", {"gate": "deploy:tag", "decision": "rejected", "who": "bob",
                            "wait_seconds": 3.0, "reason": "not today"}, step_id="tag")
    log.record("step_finished", {"status": "not_run", "attempts": 0, "reason": "not run: rejected"},
               step_id="tag")
    log.record("run_finished", {"status": "stopped", "stopped": "rejected", "usage": {"cpu_seconds": 0.75}})
    return log


def test_each_record_carries_the_hash_of_the_one_before(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    log = write_gated_run(store)
    records = parse_log(store.read_log("run-1"))
    assert [r.seq for r in records] == list(range(7))
    assert records[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in zip(records, records[1:]))
    assert all(r.hash == r.content_hash() for r in records)
    result = verify(store.read_log("run-1"))
    assert result.ok and result.complete and result.head == log.head == records[-1].hash


def test_edited_removed_and_reordered_records_are_detected(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    write_gated_run(store)
    lines = store.read_log("run-1")

    edited = json.loads(lines[1])
    edited["data"]["decision"] = "rejected"
    problems = verify([*lines[:1], json.dumps(edited).encode(), *lines[2:]]).problems
    assert problems == ["line 2 (seq 1, approval): content does not match its hash (edited)"]

    forged = parse_log([json.dumps(edited).encode()])[0]
    # a careful forger recomputes the hash (seal): the next record objects
    problems = verify([*lines[:1], forged.seal(), *lines[2:]]).problems
    assert problems == ["line 3 (seq 2, attempt_finished): does not follow record seq 1 (edited or replaced)"]

    assert verify([*lines[:2], *lines[3:]]).problems == ["record(s) seq 2 missing (removed)"]
    assert verify([*lines[:2], lines[3], lines[2], *lines[4:]]).problems == [
        "line 4 (seq 2, attempt_finished): out of order after seq 3 (reordered)"]

    truncated = verify(lines[:-1])
    assert truncated.ok and not truncated.complete  # a removed tail shows as a log that never finished


def test_a_killed_process_loses_no_record_even_between_commit_points(tmp_path: Path) -> None:
    """Only commit points are fsynced; the records between them are already the kernel's when
    ``record`` returns, so a SIGKILL right after one loses nothing."""
    script = f"""
import os, signal
from prefect.filesystems import LocalFileSystem
from prefect_agentic.blocks.audit_storage import AuditStorage
from prefect_agentic.record.audit import AuditLog
from prefect_agentic.record.store import AuditStore
log = AuditLog(AuditStore(AuditStorage(filesystem=LocalFileSystem(basepath={str(tmp_path)!r}))), "run-k")
log.record("run_started", {{"flow_run_id": "run-k"}})
log.record("attempt_finished", {{"attempt": 1, "outcome": "ok"}}, step_id="a")
log.record("step_finished", {{"status": "completed"}}, step_id="a")
log.record("step_input", {{"tool": "shell"}}, step_id="b")
os.kill(os.getpid(), signal.SIGKILL)
"""
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    lines = local_store(tmp_path).read_log("run-k")
    assert [r.kind for r in parse_log(lines)] == ["run_started", "attempt_finished", "step_finished",
                                                  "step_input"]
    assert verify(lines).ok


def test_large_text_is_stored_once_by_its_sha256_and_referenced(tmp_path: Path) -> None:
    store = local_store(tmp_path, inline_limit_bytes=100)
    log = AuditLog(store, "run-2")
    big = "line of captured output\n" * 50
    entry = log.record("verdict", {"output": {"log": big, "exit_code": 0}}, step_id="s")
    ref = entry.data["output"]["log"]
    digest = hashlib.sha256(big.encode()).hexdigest()
    assert ref[BLOB_KEY] == f"sha256:{digest}" and ref["size"] == len(big)
    path = tmp_path / object_path(digest)
    assert path.read_text() == big
    assert store.resolve(entry.data) == {"output": {"log": big, "exit_code": 0}}
    written = path.stat().st_mtime_ns
    log.record("verdict", {"output": {"log": big}}, step_id="s")
    assert path.stat().st_mtime_ns == written  # write once: the same content is not written again
    path.write_text(big.upper())
    with pytest.raises(AuditError, match="does not match its name"):
        store.resolve(entry.data)


def test_a_remote_filesystem_block_holds_the_log_too() -> None:
    store = AuditStore(AuditStorage(filesystem=RemoteFileSystem(basepath="memory://agentic-audit-test")))
    write_gated_run(store, "remote-run")
    assert verify(store.read_log("remote-run")).complete
    ref = store.put(b"x" * 5000)
    assert store.get(ref) == b"x" * 5000
    with pytest.raises(AuditError, match="no audit log for run missing"):
        store.read_log("missing")


def test_approval_denial_and_budget_records_become_events(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    log = AuditLog(store, "run-3")
    names = [event_name(log.record(kind, data)) for kind, data in [
        ("approval", {"gate": "push", "decision": "approve", "approver": "alice"}),
        ("approval", {"gate": "escalation", "answer": {"action": "retry"}}),
        ("policy_decision", {"allowed": False, "rule": "force-push"}),
        ("budget", {"event": "warning", "meter": "steps"}),
        ("budget", {"source": "llm", "cost": 0.1}),
        ("verdict", {"attempt": 1}),
    ]]
    assert names == ["prefect-agentic.approval.approve", "prefect-agentic.approval.retry",
                     "prefect-agentic.policy.denied", "prefect-agentic.budget.warning", None, None]


def test_stats_count_approval_waits_statuses_and_cost_from_the_log(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    write_gated_run(store)
    facts = RunFacts(flow_run_id="run-1", workflow="?", status="completed", duration_s=20.0)
    add_audit(facts, parse_log(store.read_log("run-1")))
    stats = compute([facts])
    [workflow] = stats.workflows
    assert (workflow.workflow, workflow.runs, workflow.succeeded, workflow.success_rate) == ("deploy", 1, 0, 0.0)
    assert workflow.approval_wait_s == 15.5 and workflow.cpu_seconds_per_run == 0.75
    assert [(s.step, s.runs, s.succeeded) for s in stats.steps] == [("push", 1, 1)]  # not_run is no attempt


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == 10.0 and percentile(values, 95) == 19.0
    assert timing([4.0]).model_dump() == {"mean": 4.0, "p50": 4.0, "p95": 4.0}
    assert timing([]).mean is None
