"""Audit logs, artifacts, events, metrics and replay of real runs (real Docker, git, Prefect API).

Two runs of one plan whose outcomes the test controls: on a repository with a
bug the tests step fails twice (one retry) and the step after it does not run;
on the fixed repository everything completes.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import typer
from api_reads import read_events
from audit_check import expect_broken_audit, reseal
from conftest import agentic_cli, git_commit_all
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.flow_engine import run_flow
from typer.testing import CliRunner, Result

from prefect_agentic.blocks.budget import Budget
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.cli import audit as audit_commands
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.flows.artifacts import ProgressArtifact, artifact_key
from prefect_agentic.flows.run_plan import run_plan
from prefect_agentic.plan import parse_plan
from prefect_agentic.record.audit import AuditLog, AuditRecord, parse_log
from prefect_agentic.record.store import BLOB_KEY, AuditStore
from prefect_agentic.replay import replay_run
from prefect_agentic.report import RunReport
from prefect_agentic.settings import agentic_home
from prefect_agentic.stats import read_flow_runs

PLAN = """
id: audit-metrics
goal: Run the tests of the calc module
steps:
  - id: note
    tool: shell
    writes_workspace: true
    args: {command: "sleep 1; echo checked > NOTES.txt"}
  - id: tests
    tool: pytest
    depends_on: [note]
    retries: 1
    retry_backoff_seconds: 0
    success: {tests_failed: 0}
  - id: report
    tool: shell
    depends_on: [tests]
    args: {command: "echo done"}
  - id: chatty
    tool: shell
    depends_on: [note]
    args: {command: "python3 -c \\"print('captured line ' * 400)\\""}
"""
DENIED = """
id: audit-denial
goal: Touch the CI configuration
steps:
  - id: edit-ci
    tool: shell
    writes_workspace: true
    args: {command: "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/ci.yml"}
"""
TESTS = "from calc import mean\n\n\ndef test_mean():\n    assert mean([2, 4]) == 3\n\n\ndef test_ok():\n    pass\n"
BUGGY = "def mean(values):\n    return sum(values) / (len(values) + 1)\n"
FIXED = "def mean(values):\n    return sum(values) / len(values)\n"

pytestmark = pytest.mark.usefixtures("prefect_api")


def make_repo(root: Path, calc: str) -> Path:
    root.mkdir()
    (root / "calc.py").write_text(calc)
    (root / "test_calc.py").write_text(TESTS)
    os.system(f"git init -q -b main {root}")
    git_commit_all(root, "initial")
    return root


def run(repo: Path, image: str, plan: str = PLAN, **kwargs: Any) -> RunReport:
    state = run_plan(plan=parse_plan(plan), repo=str(repo), sandbox=SandboxSettings(image=image),
                     budget=Budget(max_steps=20, warn_at=0.1), return_state=True, **kwargs)
    outcome = state.result(raise_on_failure=False)
    return outcome.report if isinstance(outcome, PlanRunFailed) else outcome


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sandbox_image, prefect_api) -> dict[str, RunReport]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("audit")
    failed = run(make_repo(root / "buggy", BUGGY), sandbox_image, request_id="ticket-42")
    succeeded = run(make_repo(root / "fixed", FIXED), sandbox_image)
    denied = run(root / "fixed", sandbox_image, DENIED)
    assert not failed.ok and succeeded.ok and not denied.ok, (failed, succeeded, denied)
    return {"failed": failed, "succeeded": succeeded, "denied": denied}


def cli(*args: str) -> Result:
    """The audit commands in this process (a subprocess costs seconds of start-up per call)."""
    app = typer.Typer()
    audit_commands.register(app)
    return CliRunner().invoke(app, list(args))


def store() -> AuditStore:
    return AuditStore()


def records_of(report: RunReport) -> list[AuditRecord]:
    return parse_log(store().read_log(str(report.flow_run_id)))


def of(records: list[AuditRecord], kind: str, step: str | None = None) -> list[AuditRecord]:
    return [r for r in records if r.kind == kind and (step is None or r.step == step)]


def test_the_log_holds_every_decision_of_the_run_in_order(runs) -> None:  # type: ignore[no-untyped-def]
    report = runs["failed"]
    records = records_of(report)
    started = records[0]
    assert started.kind == "run_started" and records[-1].kind == "run_finished"
    assert {k: started.data[k] for k in ("flow_run_id", "run_key", "plan_id", "request_id")} == {
        "flow_run_id": report.flow_run_id, "run_key": report.run_key, "plan_id": "audit-metrics",
        "request_id": "ticket-42"}
    assert started.data["image_id"].startswith("sha256:") and started.data["tools"] == {
        "shell": "1.0.0", "pytest": "1.0.0"}
    assert [s["id"] for s in started.data["plan"]["steps"]] == ["note", "tests", "report", "chatty"]
    assert of(records, "step_input", "tests")[0].data["args"] == {}
    attempts = [(r.data["attempt"], r.data["outcome"], r.data.get("error_kind"))
                for r in of(records, "attempt_finished", "tests")]
    assert attempts == [(1, "retry", "unmet:tests_failed"), (2, "retry", "unmet:tests_failed")]
    verdicts = of(records, "verdict", "tests")
    assert [v.data["verdict"]["criteria"] for v in verdicts] == [["tests_failed"], ["tests_failed"]]
    assert {r.step: r.data["status"] for r in of(records, "step_finished")} == {
        "note": "completed", "tests": "failed", "report": "not_run", "chatty": "completed"}
    assert of(records, "budget")[0].data == {"event": "warning", "meter": "steps", "used": 2.0, "limit": 20.0}
    finished = records[-1].data
    assert finished["status"] == "failed" and finished["diff_stat"] == "1 files, +1 -0"
    assert finished["usage"]["cpu_seconds"] > 0
    # each step's attempts are recorded before the step's end, and the end before the run's end
    seqs = {(r.kind, r.step): r.seq for r in records}
    assert seqs[("attempt_finished", "tests")] < seqs[("step_finished", "tests")] < records[-1].seq


def test_large_outputs_are_content_addressed_objects(runs) -> None:  # type: ignore[no-untyped-def]
    [verdict] = of(records_of(runs["failed"]), "verdict", "chatty")
    ref = verdict.data["output"]["stdout"]
    assert ref[BLOB_KEY].startswith("sha256:") and ref["size"] == len("captured line " * 400) + 1
    assert store().get(ref[BLOB_KEY]).decode() == "captured line " * 400 + "\n"
    [note] = of(records_of(runs["failed"]), "verdict", "note")
    assert "+checked" in note.data["diff"]  # the attempt's diff (small enough to stay inline)


def copy_log(report: RunReport, name: str, change) -> str:  # type: ignore[no-untyped-def]
    """A changed copy of the run's log, stored as the log of run ``name``."""
    lines = store().read_log(str(report.flow_run_id))
    target = agentic_home() / "audit" / "runs" / f"{name}.jsonl"
    target.write_bytes(b"".join(line + b"\n" for line in change(lines)))
    expect_broken_audit(target, "a changed copy for the tamper checks")
    return name


def edit(lines: list[bytes]) -> list[bytes]:
    record = json.loads(lines[3])
    record["data"]["verdict"]["kind"] = "fail"
    return [*lines[:3], json.dumps(record).encode(), *lines[4:]]


TAMPERING = {
    "intact": (lambda lines: lines, "ok, 22 records"),
    "edited": (edit, "✘ line 4 (seq 3, verdict): content does not match its hash (edited)"),
    "removed": (lambda lines: lines[:5] + lines[6:], "✘ record(s) seq 5 missing (removed)"),
    "reordered": (lambda lines: [*lines[:5], lines[6], lines[5], *lines[7:]],
                  ": out of order after seq 6 (reordered)"),
    "truncated": (lambda lines: lines[:-1], "does not end with run_finished"),
}


def test_audit_verify_detects_edited_removed_and_reordered_records(runs) -> None:  # type: ignore[no-untyped-def]
    report = runs["failed"]
    names = [copy_log(report, f"{case}-{report.flow_run_id}", change) for case, (change, _) in TAMPERING.items()]
    result = cli("audit", "verify", str(report.flow_run_id))
    assert result.exit_code == 0 and f"audit log of run {report.flow_run_id}: ok, 22 records" in result.stdout
    assert "(anchored in Prefect)" in result.stdout
    result = cli("audit", "verify", "--chain-only", names[0])  # a copy: no flow run of that name has an anchor
    assert result.exit_code == 0 and f"audit log of run {names[0]}: chain ok, 22 records" in result.stdout
    assert "head not checked (--chain-only)" in result.stdout
    log = agentic_home() / "audit" / "runs" / f"{report.flow_run_id}.jsonl"
    original = log.read_bytes()
    log.write_bytes(b"".join(line + b"\n" for line in original.splitlines()[:-1]))  # the tail cut off
    try:
        result = cli("audit", "verify", *names, str(report.flow_run_id))
    finally:
        log.write_bytes(original)
    assert result.exit_code == 1
    for case, (_, message) in TAMPERING.items():
        assert message in result.stdout, (case, result.stdout)
    # the head Prefect keeps, apart from the log, shows the real log was cut off
    assert "but Prefect's anchor holds head" in result.stdout and ": cut off or rewritten" in result.stdout
    assert result.stdout.count("TAMPERED") == 4


def test_events_tell_the_lifecycle_with_the_run_plan_and_request_as_related_resources(runs) -> None:  # type: ignore[no-untyped-def]
    report = runs["failed"]
    expected = {"prefect-agentic.run.started", "prefect-agentic.step.started", "prefect-agentic.step.completed",
                "prefect-agentic.step.failed", "prefect-agentic.step.not_run", "prefect-agentic.budget.warning",
                "prefect-agentic.run.failed"}
    deadline = time.monotonic() + 30
    while True:
        events = asyncio.run(read_events(str(report.flow_run_id)))
        if expected <= {e["event"] for e in events} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert expected <= {e["event"] for e in events}
    failed = next(e for e in events if e["event"] == "prefect-agentic.step.failed")
    assert failed["resource"]["prefect-agentic.step"] == "tests"
    assert {r["prefect.resource.id"] for r in failed["related"]} >= {  # Prefect adds the flow, too
        f"prefect.flow-run.{report.flow_run_id}", "prefect-agentic.plan.audit-metrics",
        "prefect-agentic.request.ticket-42"}
    assert failed["payload"]["attempts"] == 2


async def read_artifacts(flow_run_id: str) -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {"anchor" if (a.key or "").startswith("agentic-audit-head-") else a.type: a.data for a in found}


def test_each_run_publishes_a_summary_a_step_table_and_its_progress_while_steps_remain(runs) -> None:  # type: ignore[no-untyped-def]
    report = runs["failed"]
    artifacts = asyncio.run(read_artifacts(str(report.flow_run_id)))
    summary = artifacts["markdown"]
    assert "# audit-metrics v1: Run the tests of the calc module" in summary
    assert "**Status:** failed" in summary and "**changes:** 1 files, +1 -0" in summary
    assert "| tests | pytest | failed | 2 | no |" in summary
    assert "- **tests**: 1 passed, 1 failed, 0 errors, 0 skipped" in summary
    assert "failing: `test_calc.py::test_mean`" in summary
    assert f"agentic audit verify {report.flow_run_id}" in summary
    table = json.loads(artifacts["table"]) if isinstance(artifacts["table"], str) else artifacts["table"]
    rows = {row["step"]: row for row in table}
    assert (rows["tests"]["status"], rows["tests"]["attempts"], rows["tests"]["cached"]) == ("failed", 2, False)
    assert rows["note"]["duration_s"] > 0 and rows["note"]["started"] <= rows["note"]["finished"]
    assert artifacts["progress"] == 100.0  # made when `note` ended (a second into the run), then updated
    head = records_of(report)[-1]  # the log's head, in an artifact of its own, for `agentic audit verify`
    assert json.loads(artifacts["anchor"]) == [{"seq": head.seq, "record": "run_finished", "head": head.hash}]
    # a one-step plan's steps all end at once: no progress bar, its state says what one would
    one_step = asyncio.run(read_artifacts(str(runs["denied"].flow_run_id)))
    assert "markdown" in one_step and "table" in one_step and "progress" not in one_step


class Clock:
    """A clock the test moves: the progress bar's decisions depend on the run's age alone."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def finished(step: str, seq: int) -> AuditRecord:
    return AuditRecord(seq=seq, at=datetime.now(timezone.utc), kind="step_finished", step=step, prev="0" * 64)


async def progress_artifacts(key: str) -> list[Any]:
    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_a_run_gets_a_progress_bar_only_once_it_has_lasted_a_second() -> None:
    @flow
    def quick_run() -> ProgressArtifact:
        clock = Clock()
        progress = ProgressArtifact("progress-quick", ["a", "b", "c"], clock=clock)
        for seq, step in enumerate("abc"):  # every step ends within the run's first second
            clock.now += 0.3
            progress(finished(step, seq))
        progress.flush()
        return progress

    assert quick_run().artifact_id is None
    assert asyncio.run(progress_artifacts(artifact_key("progress", "progress-quick"))) == []

    @flow
    def slow_run() -> ProgressArtifact:
        clock = Clock()
        progress = ProgressArtifact("progress-slow", ["a", "b", "c", "d"], clock=clock)
        clock.now += 0.6
        progress(finished("a", 0))
        progress.flush()
        assert progress.artifact_id is None  # 0.6 s into the run: no bar yet
        clock.now += 0.6
        progress(finished("b", 1))  # 1.2 s: made, at the share done by then
        progress.flush()
        [made] = asyncio.run(progress_artifacts(artifact_key("progress", "progress-slow")))
        assert (made.id, made.data, made.description) == (progress.artifact_id, 50.0, "2 of 4 steps finished")
        clock.now += 0.1
        progress(finished("c", 2))  # within a second of the last write: left for later
        progress.flush()
        [same] = asyncio.run(progress_artifacts(artifact_key("progress", "progress-slow")))
        assert same.data == 50.0
        clock.now += 0.1
        progress(finished("d", 3))  # the last step: always written
        progress.flush()
        return progress

    progress = slow_run()
    [done] = asyncio.run(progress_artifacts(artifact_key("progress", "progress-slow")))
    assert (done.id, done.data, done.description) == (progress.artifact_id, 100.0, "4 of 4 steps finished")
    assert done.flow_run_id is not None  # written by its own thread, still the flow run's artifact


def test_stats_from_the_prefect_api_and_the_audit_logs(runs) -> None:  # type: ignore[no-untyped-def]
    result = cli("stats", "--workflow", "audit-metrics", "--since", "1d", "--json", "--publish")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    [workflow] = stats["workflows"]
    assert (workflow["runs"], workflow["finished"], workflow["succeeded"], workflow["success_rate"]) == (2, 2, 1, 0.5)
    ok = runs["succeeded"]
    assert workflow["completion_s"]["p50"] == workflow["completion_s"]["p95"] == pytest.approx(ok.duration_s, abs=2)
    cpu = [json.loads(records_of(r)[-1].model_dump_json())["data"]["usage"]["cpu_seconds"] for r in (runs["failed"], runs["succeeded"])]
    assert workflow["cpu_seconds_per_run"] == pytest.approx(sum(cpu) / 2, abs=0.001)
    steps = {s["step"]: s for s in stats["steps"]}
    assert (steps["tests"]["runs"], steps["tests"]["succeeded"], steps["tests"]["retries"]) == (2, 1, 1)
    assert steps["tests"]["retries_per_run"] == 0.5 and steps["note"]["success_rate"] == 1.0
    assert steps["report"]["runs"] == 1  # the run where it did not run does not count
    assert stats["failure_modes"] == [{"workflow": "audit-metrics", "error_kind": "unmet:tests_failed", "count": 1}]
    assert asyncio.run(read_flow_runs(datetime(2099, 1, 1, tzinfo=timezone.utc))) == []
    assert "agentic-stats" in asyncio.run(artifact_keys())


async def artifact_keys() -> set[str]:
    async with get_client() as client:
        return {a.key for a in await client.read_artifacts()}


def test_replay_reproduces_the_failed_run_from_the_log_alone(runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    laptop = tmp_path / "laptop"
    shutil.copytree(agentic_home() / "audit", laptop / "audit")  # only the audit storage, no workspace
    env = {**os.environ, "AGENTIC_HOME": str(laptop), "DOCKER_HOST": "unix:///nonexistent.sock"}
    result = agentic_cli("replay", str(runs["failed"].flow_run_id), "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    replayed = json.loads(result.stdout)
    assert replayed["same"] and replayed["differences"] == []
    assert (replayed["recorded_status"], replayed["replayed_status"]) == ("failed", "failed")
    steps = {s["step_id"]: s for s in replayed["steps"]}
    assert [(a["outcome"], a["reasons"]) for a in steps["tests"]["attempts"]] == [
        ("retry", ["tests failed: 1, allowed at most 0"])] * 2
    assert steps["report"]["status"] == "not_run"


def rewritten(report: RunReport, name: str, change) -> str:  # type: ignore[no-untyped-def]
    """The run's log re-recorded (a valid chain) with ``change(record)`` applied to each record."""
    log = AuditLog(store(), name)
    for record in records_of(report):
        changed = change(record.model_copy(deep=True))
        log.record(changed.kind, changed.data, step_id=changed.step)
    return name


def test_replay_shows_where_other_criteria_would_have_decided_otherwise(runs) -> None:  # type: ignore[no-untyped-def]
    def allow_one_failure(record: AuditRecord) -> AuditRecord:
        if record.kind == "run_started":
            record.data["plan"]["steps"][1]["success"] = {"tests_failed": 1}
        return record

    name = rewritten(runs["failed"], f"lenient-{runs['failed'].flow_run_id}", allow_one_failure)
    report = replay_run(store(), name)
    found = {(d.step, d.attempt, d.what): (d.recorded, d.replayed) for d in report.differences}
    assert found[("tests", 1, "outcome")] == ("retry", "ok")
    assert found[("tests", None, "status")] == ("failed", "completed")
    assert found[("report", None, "status")] == ("not_run", "would run")  # no recorded answer for it
    assert found[(None, None, "run status")] == ("failed", "undetermined")


def test_live_replay_reruns_the_tools_and_reports_what_differs(runs) -> None:  # type: ignore[no-untyped-def]
    same = replay_run(store(), str(runs["failed"].flow_run_id), live=True)
    assert same.same, same.differences
    assert [a.outcome for a in next(s for s in same.steps if s.step_id == "tests").attempts] == ["retry", "retry"]

    def claim_more_passes(record: AuditRecord) -> AuditRecord:
        if record.kind == "verdict" and record.step == "tests":
            record.data["output"]["passed"] = 5
        return record

    name = rewritten(runs["failed"], f"doctored-{runs['failed'].flow_run_id}", claim_more_passes)
    changed = replay_run(store(), name, live=True)
    assert {(d.step, d.attempt, d.what, d.recorded, d.replayed) for d in changed.differences} == {
        ("tests", 1, "output.passed", 5, 1), ("tests", 2, "output.passed", 5, 1)}


def test_a_policy_denial_is_an_event_a_failure_mode_and_replays_the_same(runs) -> None:  # type: ignore[no-untyped-def]
    report = runs["denied"]
    [attempt] = of(records_of(report), "attempt_finished", "edit-ci")
    assert attempt.data["error_kind"] == "policy:protected_paths:.github/workflows/"
    deadline = time.monotonic() + 30
    while True:
        denials = [e for e in asyncio.run(read_events(str(report.flow_run_id)))
                   if e["event"] == "prefect-agentic.policy.denied"]
        if denials or time.monotonic() > deadline:
            break
        time.sleep(1)
    [denial] = denials
    assert denial["payload"]["rule"] == "protected_paths:.github/workflows/"
    assert denial["resource"]["prefect-agentic.step"] == "edit-ci"
    stats = json.loads(cli("stats", "--workflow", "audit-denial", "--json").stdout)
    assert stats["failure_modes"] == [
        {"workflow": "audit-denial", "error_kind": "policy:protected_paths:.github/workflows/", "count": 1}]
    replayed = replay_run(store(), str(report.flow_run_id))
    assert replayed.same and replayed.replayed_status == "failed", replayed.differences


def test_a_run_whose_anchor_prefect_does_not_hold_is_said_to_be_unchecked_and_exits_3(runs) -> None:  # type: ignore[no-untyped-def]
    """A run made before the anchor, or whose last process could not publish it: the chain is checked,
    the head is said not to be, and the exit code is 3 (the chain alone with ``--chain-only``)."""
    run_id = str(runs["denied"].flow_run_id)
    asyncio.run(delete_anchors(run_id))
    result = cli("audit", "verify", run_id)
    assert result.exit_code == 3, result.output
    said = " ".join(result.stdout.split())
    assert f"audit log of run {run_id}: chain ok, " in said and "head NOT checked: the Prefect API" in said
    assert "holds no anchor of this run's audit head" in said, said
    result = cli("audit", "verify", "--chain-only", run_id)
    assert result.exit_code == 0 and "head not checked (--chain-only)" in result.stdout, result.output


async def delete_anchors(flow_run_id: str) -> None:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="agentic-audit-head-%")),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        assert found
        for artifact in found:
            await client.delete_artifact(artifact.id)


PINNED = """
id: audit-pinned
goal: Resume with a tool version the worker no longer has
steps:
  - {id: hello, tool: shell, args: {command: "echo hello"}}
"""


def test_a_run_stopped_at_a_version_pin_anchors_the_head_its_process_leaves(runs, sandbox_image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A process that resumes a run and stops at once (a pinned tool version is gone) ends before
    the run has a summary; the head it leaves is anchored all the same, so a reseal shows."""
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(run_plan, parameters={})
    run_id = str(flow_run.id)
    started = records_of(runs["succeeded"])[0]  # a real run_started, pinning a shell version no longer installed
    pins = {**started.data["pins"], "tools": {**started.data["pins"]["tools"], "shell": "0.0.1"}}
    AuditLog(store(), run_id).record("run_started", {**started.data, "flow_run_id": run_id, "pins": pins})
    state = run_flow(run_plan, flow_run=flow_run, return_type="state", parameters={
        "plan": parse_plan(PINNED), "repo": str(make_repo(tmp_path / "repo", FIXED)),
        "sandbox": SandboxSettings(image=sandbox_image), "on_upgrade": "pinned"})
    assert state.is_failed() and "tool 'shell': pinned 0.0.1" in str(state.message), state
    records = parse_log(store().read_log(run_id))
    assert [r.kind for r in records] == ["run_started", "run_resumed", "version_switch", "run_finished"]

    honest = cli("audit", "verify", run_id)
    assert honest.exit_code == 0 and "(anchored in Prefect)" in honest.stdout, honest.output
    log = agentic_home() / "audit" / "runs" / f"{run_id}.jsonl"
    original = log.read_bytes()
    log.write_bytes(b"".join(line + b"\n" for line in reseal(original.splitlines(), 1,
                                                              lambda data: data.update(host="elsewhere"))))
    try:
        forged = cli("audit", "verify", run_id)
    finally:
        log.write_bytes(original)
    assert forged.exit_code == 1 and "(run_finished) has hash" in forged.stdout, forged.output
