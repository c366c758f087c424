"""Chaos runs: seeded faults around tool calls, recorded in the audit log, survived by retries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import EXAMPLES, agentic_cli

from prefect_agentic.chaos import ChaosSpec, Fault, load_chaos_spec
from prefect_agentic.chaos.spec import ChaosSpecError
from prefect_agentic.record.audit import parse_log, verify
from prefect_agentic.record.store import AuditStore


def test_a_seed_decides_the_same_faults_whatever_the_order_of_asking() -> None:
    spec = ChaosSpec(seed=7, faults=[Fault(kind="tool_exit", rate=0.5)])
    cells = [(step, attempt) for step in "abcdefgh" for attempt in (1, 2, 3)]
    forward = {cell: spec.hits(0, *cell) for cell in cells}
    backward = {cell: spec.hits(0, *cell) for cell in reversed(cells)}
    assert forward == backward
    assert 0 < sum(forward.values()) < len(cells)  # a rate of 0.5 hits some, not all
    other_seed = ChaosSpec(seed=8, faults=spec.faults)
    assert {cell: other_seed.hits(0, *cell) for cell in cells} != forward


def test_faults_select_tools_steps_and_attempts_by_pattern() -> None:
    fault = Fault(kind="tool_exit", tools="deploy.*", attempts=[1])
    assert fault.selects("deploy.canary", "ship", 1)
    assert not fault.selects("deploy.canary", "ship", 2)
    assert not fault.selects("shell", "ship", 1)


def test_a_bad_chaos_spec_names_the_place(tmp_path: Path) -> None:
    spec = tmp_path / "chaos.yaml"
    spec.write_text("seed: 1\nfaults:\n  - {kind: meteor, rate: 2}\n")
    with pytest.raises(ChaosSpecError, match=r"faults\.0\.kind.*faults\.0\.rate"):
        load_chaos_spec(str(spec))
    result = agentic_cli("run", str(EXAMPLES / "plans" / "fix-lint-demo.yaml"), "--chaos", str(spec))
    assert result.returncode == 2
    assert f"chaos spec {spec}: faults.0.kind" in result.stderr


@pytest.mark.usefixtures("prefect_api")
def test_a_chaos_run_recovers_by_retry_records_every_fault_and_a_clean_rerun_executes_nothing_again(
        make_repo, sandbox_image: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "p.yaml"
    plan.write_text("id: chaos-demo\ngoal: survive\nsteps:\n"
                    "  - {id: a, tool: shell, retries: 1, writes_workspace: true, args: {command: 'echo a > a.txt'}}\n"
                    "  - {id: b, tool: shell, depends_on: [a], args: {command: 'cat a.txt'}}\n")
    chaos = json.dumps({"seed": 3, "faults": [
        {"kind": "tool_exit", "tools": "shell", "steps": "a", "attempts": [1]},
        {"kind": "latency_before", "steps": "b", "seconds": 0.1}]})
    repo = make_repo({"f": "x"})
    result = agentic_cli("run", str(plan), "--repo", str(repo), "--image", sandbox_image, "--json",
                         "--chaos", chaos)
    assert result.returncode == 0, result.stderr + result.stdout[-3000:]
    report = json.loads(result.stdout)
    assert [(s["step_id"], s["status"], s["attempts"]) for s in report["steps"]] == [
        ("a", "completed", 2), ("b", "completed", 1)]
    lines = AuditStore().read_log(report["flow_run_id"])
    verification = verify(lines)
    assert verification.problems == [] and verification.complete
    records = parse_log(lines)
    faults = [(r.step, r.data["kind"], r.data["attempt"]) for r in records if r.kind == "chaos_fault"]
    assert faults == [("a", "tool_exit", 1), ("b", "latency_before", 1)]
    failed = [r.data["error_kind"] for r in records if r.kind == "attempt_finished" and r.data["outcome"] != "ok"]
    assert failed == ["chaos:tool_exit"]

    clean = agentic_cli("run", str(plan), "--repo", str(repo), "--image", sandbox_image, "--json")
    assert clean.returncode == 0, clean.stderr
    rerun = json.loads(clean.stdout)
    assert [s["status"] for s in rerun["steps"]] == ["cached", "cached"]
    assert rerun["final_snapshot"] == report["final_snapshot"]


def test_an_injected_fault_is_a_prefect_event_named_after_its_kind() -> None:
    from datetime import datetime, timezone

    from prefect_agentic.record.audit import AuditRecord
    from prefect_agentic.record.events import event_name

    record = AuditRecord(seq=3, at=datetime.now(timezone.utc), kind="chaos_fault", step="a",
                         data={"kind": "tool_timeout", "attempt": 1}, prev="0" * 64)
    assert event_name(record) == "prefect-agentic.chaos.tool_timeout"


@pytest.mark.usefixtures("prefect_api")
def test_a_saved_chaos_settings_block_is_chosen_by_name(tmp_path: Path) -> None:
    from prefect_agentic.blocks import ChaosSettings

    ChaosSettings(seed=5, faults=[Fault(kind="tool_exit", tools="deploy.*", attempts=[1])]).save(
        "rehearse-rollback", overwrite=True)
    spec = ChaosSettings.load("rehearse-rollback").spec()
    assert spec.seed == 5 and spec.faults[0].selects("deploy.canary", "ship", 1)
    both = agentic_cli("run", str(EXAMPLES / "plans" / "fix-lint-demo.yaml"), "--chaos", '{"seed": 1}',
                       "--chaos-block", "rehearse-rollback")
    assert both.returncode == 2 and "give --chaos or --chaos-block, not both" in both.stderr
    missing = agentic_cli("run", str(EXAMPLES / "plans" / "fix-lint-demo.yaml"), "--chaos-block", "nope")
    assert missing.returncode == 2 and "--chaos-block nope" in missing.stderr
