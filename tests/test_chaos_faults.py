"""Faults that cause a real failure and let the pack meet it: a killed container, a refusing
Docker engine, spoiled tool reports. Each run on real Docker; the attempt fails with the pack's
own clear error (or survives), a retry recovers, and nothing is left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import agentic_cli

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.chaos import ChaosInjector, ChaosSpec, Fault
from prefect_agentic.chaos.spec import ChaosSpecError, load_chaos_spec
from prefect_agentic.errors import ToolOutputError, WorkspaceBoundaryError
from prefect_agentic.record.audit import parse_log, verify
from prefect_agentic.record.store import AuditStore
from prefect_agentic.sandbox.runner import LABEL_RUN, open_sandbox
from prefect_agentic.tools.base import ToolContext
from prefect_agentic.tools.pytest import PytestTool
from prefect_agentic.tools.ruff import RuffTool
from prefect_agentic.workspace import Workspace, resolve_base


class Records:
    """A recorder keeping what it is given."""

    def __init__(self) -> None:
        self.kept: list[tuple[str, dict[str, Any], str | None]] = []

    def record(self, kind: str, data: Any, *, step_id: str | None = None) -> None:
        self.kept.append((kind, dict(data), step_id))


def test_a_garble_mode_belongs_to_garbled_output_only() -> None:
    with pytest.raises(ChaosSpecError, match=r"faults\.0: .*mode is only for garbled_output, llm_malformed and canary_regression"):
        load_chaos_spec('{"faults": [{"kind": "tool_exit", "mode": "huge"}]}')
    with pytest.raises(ChaosSpecError, match=r"mode .melted. of garbled_output is not one of truncated, garbled"):
        load_chaos_spec('{"faults": [{"kind": "garbled_output", "mode": "melted"}]}')
    spec = ChaosSpec(seed=4, faults=[Fault(kind="garbled_output")])
    modes = {spec.choice(0, step, 1, ("truncated", "garbled", "wrong_type", "huge")) for step in "abcdefghij"}
    assert len(modes) > 1  # unset, the seed picks a mode per attempt


SPOILED = {  # mode -> what pytest's and ruff's report readers say
    "truncated": ("pytest report junit.xml is not valid XML", "ruff report ruff.json is not ruff's JSON format"),
    "garbled": ("pytest report junit.xml is not valid XML", "ruff report ruff.json is not ruff's JSON format"),
    "wrong_type": ("pytest report junit.xml is not JUnit XML: a testsuite's time is not a number",
                   "ruff report ruff.json is not ruff's JSON format"),
    "huge": ("workspace file '.agentic/reports/s/junit.xml' is .* over the .*-byte limit",
             "workspace file '.agentic/reports/s/ruff.json' is .* over the .*-byte limit"),
}


def test_spoiled_reports_fail_the_real_tools_with_an_error_naming_the_report(
        make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"tests/test_a.py": "def test_a():\n    assert True\n", "pkg/m.py": "import os\n"})
    workspace = Workspace(repo, SandboxSettings().workspace_owner())
    workspace.hand_over()
    workspace.prepare_reports(".agentic/reports/s")
    sandbox = open_sandbox(SandboxSettings(image=sandbox_image), repo, f"chaos-garble-{os.getpid()}")
    try:
        for mode, (pytest_error, ruff_error) in SPOILED.items():
            spec = ChaosSpec(seed=1, faults=[Fault(kind="garbled_output", mode=mode)])
            for tool, args, error in ((PytestTool, {"paths": ["tests"]}, pytest_error),
                                      (RuffTool, {"mode": "check", "select": ["F401"]}, ruff_error)):
                recorder = Records()
                injector = ChaosInjector(spec, recorder, tool.name, "s", 1)  # type: ignore[arg-type]
                ctx = ToolContext(sandbox=sandbox, workspace=repo, reports_path=".agentic/reports/s", step_id="s",
                                  base_snapshot=resolve_base(repo, "HEAD"), attempt=1, timeout_seconds=120,
                                  reports_filter=injector.reports_filter())
                expected = WorkspaceBoundaryError if mode == "huge" else ToolOutputError
                with pytest.raises(expected, match=error):
                    tool().invoke(args, ctx)
                report = "junit.xml" if tool is PytestTool else "ruff.json"
                assert [(k, d["kind"], d["mode"], d["report"]) for k, d, _ in recorder.kept] == [
                    ("chaos_fault", "garbled_output", mode, f".agentic/reports/s/{report}")]
        unspoiled = ToolContext(sandbox=sandbox, workspace=repo, reports_path=".agentic/reports/s", step_id="s",
                                base_snapshot=resolve_base(repo, "HEAD"), attempt=1, timeout_seconds=120)
        assert PytestTool().invoke({"paths": ["tests"]}, unspoiled).passed == 1  # type: ignore[attr-defined]
    finally:
        sandbox.close()


PLAN = """\
id: chaos-sandbox-faults
goal: survive a killed container and a refusing engine
steps:
  - id: kill
    tool: shell
    retries: 1
    writes_workspace: true
    # attempt 1 would sleep for minutes: the test only ends in time because its container was killed
    args: {command: 'test "$AGENTIC_STEP_ATTEMPT" != 1 || sleep 300; echo survived > k.txt'}
  - {id: engine, tool: shell, retries: 1, depends_on: [kill], args: {command: 'cat k.txt'}}
"""
SPEC = {"seed": 1, "faults": [
    {"kind": "container_kill", "steps": "kill", "attempts": [1], "seconds": 0},
    {"kind": "docker_unavailable", "steps": "engine", "attempts": [1], "seconds": 600}]}


@pytest.mark.parametrize("mode", ["per_step", "warm"])
def test_a_killed_container_and_a_refusing_engine_fail_one_attempt_each_and_the_retries_recover(
        mode: str, make_repo, sandbox_image: str, docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    repo = make_repo({"f": "x"})
    result = agentic_cli("run", str(plan), "--repo", str(repo), "--image", sandbox_image, "--mode", mode,
                         "--json", "--chaos", json.dumps(SPEC))
    assert result.returncode == 0, result.stderr + result.stdout[-3000:]
    report = json.loads(result.stdout)
    assert [(s["step_id"], s["status"], s["attempts"]) for s in report["steps"]] == [
        ("kill", "completed", 2), ("engine", "completed", 2)]
    lines = AuditStore().read_log(report["flow_run_id"])
    verification = verify(lines)
    assert verification.problems == [] and verification.complete
    records = parse_log(lines)
    faults = [(r.step, r.data["kind"], r.data["attempt"]) for r in records if r.kind == "chaos_fault"]
    assert faults == [("kill", "container_kill", 1), ("engine", "docker_unavailable", 1)]
    failed = {r.step: r.data for r in records if r.kind == "attempt_finished" and r.data["outcome"] != "ok"}
    assert failed["kill"]["error_kind"] == "SandboxLostError"
    assert "lost its sandbox" in failed["kill"]["error"] and "(chaos fault container_kill)" in failed["kill"]["error"]
    assert failed["kill"]["duration_s"] < 120  # ended by the kill, not by its sleep of 300 s
    assert failed["engine"]["error_kind"] == "SandboxUnavailableError"
    assert "the Docker engine did not answer" in failed["engine"]["error"]
    assert "Connection refused" in failed["engine"]["error"]
    key = next(r.data["run_key"] for r in records if r.kind == "run_started")
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={key}"}) == []
