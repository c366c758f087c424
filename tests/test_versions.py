"""Versions that outlive the code: pins, several tool versions, schema versions of plans and audit logs.

The files under tests/fixtures/release-0.1.0/ were written by prefect-agentic 0.1.0
(main at be29660, before plan files and audit records carried a schema version):
a plan file, and the audit log of that plan's run. Newer packs must keep reading them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from audit_check import expect_broken_audit

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.errors import PlanError, ToolNotFoundError
from prefect_agentic.executor import RunContext
from prefect_agentic.pins import (
    RunPins,
    VersionPinError,
    pins_from_run_started,
    resolve_pins,
    switched_versions,
)
from prefect_agentic.plan import load_plan
from prefect_agentic.plan.models import PLAN_SCHEMA_VERSION, Step
from prefect_agentic.record.audit import (
    AUDIT_SCHEMA_VERSION,
    AuditRecord,
    FutureAuditRecordError,
    parse_log,
    verify,
)
from prefect_agentic.sandbox.runner import inspect_image
from prefect_agentic.tasks.step import step_cache_key
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.tools.registry import ToolRegistry, default_registry

RELEASE = Path(__file__).parent / "fixtures" / "release-0.1.0"
RELEASE_RUN = "f886e380-caa6-4136-a50e-a2cc007f08ea"


class _Echo(Tool):
    name: ClassVar[str] = "echo-versions"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "test tool"
    Input: ClassVar[type[ToolInput]] = ToolInput
    Output: ClassVar[type[ToolOutput]] = ToolOutput

    def run(self, args: Any, ctx: ToolContext) -> Mapping[str, Any]:
        return {"ok": True, "log": self.version}


class _EchoNext(_Echo):
    version: ClassVar[str] = "1.10.0"


class _EchoOther(_Echo):
    version: ClassVar[str] = "1.2.0"


# -- the registry holds several versions of a tool ---------------------------------------------


def test_the_registry_keeps_older_versions_and_finds_the_newest_by_default() -> None:
    registry = ToolRegistry([_EchoNext, _Echo, _EchoOther])
    assert registry.get("echo-versions") is _EchoNext  # 1.10.0 > 1.2.0: versions, not text, are compared
    assert registry.get("echo-versions", "1.0.0") is _Echo
    assert registry.versions("echo-versions") == ["1.0.0", "1.2.0", "1.10.0"]
    assert registry.has("echo-versions", "1.2.0") and not registry.has("echo-versions", "0.9.0")
    assert [t.name for t in registry] == ["echo-versions"]  # one entry per name in listings
    with pytest.raises(ToolNotFoundError, match=r"tool 'echo-versions' v0.9.0 is not installed "
                                                r"\(installed: 1.0.0, 1.2.0, 1.10.0\)"):
        registry.get("echo-versions", "0.9.0")


def test_a_second_class_for_the_same_tool_version_is_refused() -> None:
    class Impostor(_Echo):
        pass

    registry = ToolRegistry([_Echo])
    with pytest.raises(ValueError, match=r"two tools are registered as 'echo-versions' v1.0.0"):
        registry.register(Impostor)


# -- pins and the upgrade policy ----------------------------------------------------------------


def _pins(**tools: str) -> RunPins:
    return RunPins(pack="0.1.0", tools=tools, image="img", image_id=None)


def _no_image(ref: str) -> bool:
    raise AssertionError("no image is pinned")


def test_a_pinned_version_still_registered_is_used_whatever_the_policy() -> None:
    registry = ToolRegistry([_Echo, _EchoNext])
    for policy in ("pinned", "upgrade"):
        resolved = resolve_pins(_pins(**{"echo-versions": "1.0.0"}), registry, policy, _no_image, lambda: None)
        assert resolved.tool_versions == {"echo-versions": "1.0.0"} and resolved.switches == []


def test_pinned_stops_naming_tool_and_both_versions_and_upgrade_switches() -> None:
    registry = ToolRegistry([_EchoNext])
    pins = _pins(**{"echo-versions": "1.0.0"})
    with pytest.raises(VersionPinError) as stopped:
        resolve_pins(pins, registry, "pinned", _no_image, lambda: None)
    message = str(stopped.value)
    assert "tool 'echo-versions': pinned 1.0.0, installed 1.10.0" in message
    assert "upgrade policy 'pinned'" in message and "completed steps are kept" in message
    resolved = resolve_pins(pins, registry, "upgrade", _no_image, lambda: None)
    assert resolved.tool_versions == {"echo-versions": "1.10.0"}
    assert [(s.name, s.pinned, s.installed) for s in resolved.switches] == [("echo-versions", "1.0.0", "1.10.0")]
    note = switched_versions(pins, resolved.tool_versions, None)
    assert note.startswith("tool `echo-versions` 1.0.0 → 1.10.0")


def test_a_tool_no_longer_installed_stops_even_under_upgrade() -> None:
    with pytest.raises(VersionPinError, match=r"tool 'echo-versions': pinned 1.0.0, installed not installed.*"
                                              r"nothing installed can take their place"):
        resolve_pins(_pins(**{"echo-versions": "1.0.0"}), ToolRegistry(), "upgrade", _no_image, lambda: None)


def test_the_pinned_image_is_used_while_the_engine_has_it_else_the_policy_decides(sandbox_image: str) -> None:
    settings = SandboxSettings(image=sandbox_image)
    present = inspect_image(settings, sandbox_image)
    assert present is not None and present.id.startswith("sha256:")

    def exists(ref: str) -> bool:
        return inspect_image(settings, ref) is not None

    kept = resolve_pins(RunPins(pack="0.1.0", image=sandbox_image, image_id=present.id), ToolRegistry(),
                        "pinned", exists, lambda: present.id)
    assert kept.image_id == present.id and kept.switches == []
    gone = RunPins(pack="0.1.0", image=sandbox_image, image_id="sha256:" + "0" * 64)  # rebuilt and pruned
    with pytest.raises(VersionPinError, match=rf"sandbox image '{sandbox_image}': pinned sha256:0+, "
                                              rf"installed {present.id}"):
        resolve_pins(gone, ToolRegistry(), "pinned", exists, lambda: present.id)
    switched = resolve_pins(gone, ToolRegistry(), "upgrade", exists, lambda: present.id)
    assert switched.image_id == present.id and switched.switches[0].kind == "image"


def test_the_cache_key_holds_the_pinned_tool_version_not_the_one_that_runs(tmp_path: Path) -> None:
    step = Step(id="s", tool="shell", args={"command": "true"})
    installed = default_registry().get("shell").version

    def key(**update: Any) -> str:
        run = RunContext(run_key="k", plan_id="p", workspace=tmp_path, workspace_epoch="e", base_snapshot="b",
                         sandbox=SandboxSettings(), **update)
        return step_cache_key(None, {"step": step, "run": run})

    unpinned = key()
    pinned_same = key(pins=_pins(shell=installed), tool_versions={"shell": installed})
    assert pinned_same == unpinned  # a run that pins what is installed keeps the keys runs had before pins
    older = key(pins=_pins(shell="0.9.0"), tool_versions={"shell": "0.9.0"})
    assert older != unpinned
    # resumed under `upgrade`: the installed version runs, the key (so every completed step) stays
    assert key(pins=_pins(shell="0.9.0"), tool_versions={"shell": installed}) == older


# -- files written by the current release ------------------------------------------------------


def test_a_plan_file_of_the_release_reads_as_schema_version_1() -> None:
    plan = load_plan(RELEASE / "plan.yaml")
    assert "schema_version" not in yaml.safe_load((RELEASE / "plan.yaml").read_text())
    assert (plan.schema_version, plan.id, plan.version, [s.id for s in plan.steps]) == (
        1, "release-fixture", 2, ["greet", "edit", "status"])


def test_a_plan_in_a_newer_schema_is_refused_naming_the_file_and_versions(tmp_path: Path) -> None:
    future = tmp_path / "future.yaml"
    future.write_text(f"schema_version: {PLAN_SCHEMA_VERSION + 1}\nnew_field: x\n"
                      + (RELEASE / "plan.yaml").read_text())
    with pytest.raises(PlanError) as refused:
        load_plan(future)
    assert refused.value.problems == [(
        f"schema_version: plan schema version {PLAN_SCHEMA_VERSION + 1} is newer than this pack reads "
        f"(prefect-agentic {_pack()} reads plan schema versions 1 to {PLAN_SCHEMA_VERSION}); "
        "upgrade prefect-agentic where this plan is read")]
    cli = _agentic("validate", str(future))
    assert cli.returncode == 2
    assert str(future) in cli.stderr and f"plan schema version {PLAN_SCHEMA_VERSION + 1}" in cli.stderr


def test_the_audit_log_of_the_release_verifies_and_its_pins_read_back() -> None:
    lines = (RELEASE / f"{RELEASE_RUN}.jsonl").read_bytes().splitlines()
    assert all(b'"schema_version"' not in line for line in lines)
    check = verify(lines)
    assert check.ok and check.complete, check.problems
    records = parse_log(lines)
    assert {r.schema_version for r in records} == {1}
    pins = pins_from_run_started(records[0].data)
    assert (pins.pack, pins.tools, pins.plan_schema) == ("0.1.0", {"shell": "1.0.0", "git": "1.2.0"}, 1)
    assert pins.image_id and pins.image_id.startswith("sha256:")


def test_new_records_carry_their_schema_version_and_both_kinds_chain(tmp_path: Path) -> None:
    lines = (RELEASE / f"{RELEASE_RUN}.jsonl").read_bytes().splitlines()
    last = parse_log(lines)[-1]
    appended = AuditRecord(schema_version=AUDIT_SCHEMA_VERSION, seq=last.seq + 1, at=last.at, kind="note",
                           prev=last.hash)
    line = appended.seal()
    assert json.loads(line)["schema_version"] == AUDIT_SCHEMA_VERSION
    assert verify([*lines, line]).ok


def test_an_audit_log_with_a_future_record_is_refused_with_exit_2(tmp_path: Path) -> None:
    lines = (RELEASE / f"{RELEASE_RUN}.jsonl").read_bytes().splitlines()
    last = parse_log(lines)[-1]
    future = AuditRecord(schema_version=AUDIT_SCHEMA_VERSION + 1, seq=last.seq + 1, at=last.at, kind="note",
                         prev=last.hash)
    with pytest.raises(FutureAuditRecordError, match=rf"line {len(lines) + 1} \(seq {last.seq + 1}, note\) has "
                                                     rf"record schema version {AUDIT_SCHEMA_VERSION + 1}"):
        verify([*lines, future.seal()])
    home = tmp_path / "home"
    (home / "audit" / "runs").mkdir(parents=True)
    log = home / "audit" / "runs" / f"{RELEASE_RUN}.jsonl"
    log.write_bytes(b"\n".join([*lines, future.seal()]) + b"\n")
    expect_broken_audit(log, "a record of a future schema version, on purpose: this pack cannot verify it")
    for command in (("audit", "verify", RELEASE_RUN), ("replay", RELEASE_RUN)):
        cli = _agentic(*command, home=home)
        assert cli.returncode == 2, cli.stdout + cli.stderr
        said = " ".join(cli.stderr.split())
        assert f"runs/{RELEASE_RUN}.jsonl" in said, said
        assert (f"record schema version {AUDIT_SCHEMA_VERSION + 1}, newer than this pack reads (prefect-agentic "
                f"{_pack()} reads audit schema versions 1 to {AUDIT_SCHEMA_VERSION})") in said


def test_the_release_log_verifies_and_replays_from_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "audit" / "runs").mkdir(parents=True)
    shutil.copy(RELEASE / f"{RELEASE_RUN}.jsonl", home / "audit" / "runs")
    verified = _agentic("audit", "verify", RELEASE_RUN, home=home)  # made elsewhere: no Prefect API here knows it
    assert verified.returncode == 3 and "head NOT checked" in verified.stdout, verified.stdout + verified.stderr
    verified = _agentic("audit", "verify", "--chain-only", RELEASE_RUN, home=home)
    assert verified.returncode == 0 and "chain ok, 17 records" in verified.stdout, verified.stdout + verified.stderr
    assert "(--chain-only)" in verified.stdout
    replayed = _agentic("replay", RELEASE_RUN, home=home)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "same decisions" in replayed.stdout


def _pack() -> str:
    from prefect_agentic.pins import pack_version

    return pack_version()


def _agentic(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    if home is not None:
        env["AGENTIC_HOME"] = str(home)
    env.update(COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "prefect_agentic.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_approver_sees_what_switched_since_the_run_started() -> None:
    from prefect_agentic.blocks.tool_policy import ToolPolicy
    from prefect_agentic.gates.review import review_of
    from prefect_agentic.plan.loader import parse_plan
    from prefect_agentic.workspace import ChangeSummary

    plan = parse_plan("id: p\ngoal: g\nsteps: [{id: ship, tool: shell, requires_approval: true, "
                      "args: {command: 'true'}}]")
    pins = RunPins(pack="0.1.0", tools={"shell": "1.0.0"}, image="img", image_id="sha256:" + "a" * 64)
    switched = switched_versions(pins, {"shell": "1.1.0"}, "sha256:" + "b" * 64)
    assert switched == ("tool `shell` 1.0.0 → 1.1.0; sandbox image `img` sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb "
                        "(the run went on with the installed versions under its upgrade policy `upgrade`)")
    assert switched_versions(pins, {"shell": "1.0.0"}, pins.image_id) == ""
    review = review_of(plan, plan.steps[0], ToolPolicy(), {}, ChangeSummary(), "", versions=switched)
    for text in (review.markdown(diff_lines=10, diff_link=None), review.form_html(diff_lines=10, diff_link=None)):
        assert "Versions changed since the run started" in text and "1.0.0 → 1.1.0" in text
    quiet = review_of(plan, plan.steps[0], ToolPolicy(), {}, ChangeSummary(), "")
    assert "Versions changed" not in quiet.markdown(diff_lines=10, diff_link=None)


def test_a_run_uses_the_adapter_version_it_runs_with_while_the_pack_registers_it(tmp_path: Path) -> None:
    from prefect_agentic.executor import run_tool

    registry = default_registry()
    registry.register(_Echo)
    registry.register(_EchoNext)
    try:
        def run(**update: Any) -> RunContext:
            return RunContext(run_key="k", plan_id="p", workspace=tmp_path, workspace_epoch="e",
                              base_snapshot="b", sandbox=SandboxSettings(), **update)

        assert run_tool(run(), "echo-versions") is _EchoNext  # a new run: the newest
        assert run_tool(run(tool_versions={"echo-versions": "1.0.0"}), "echo-versions") is _Echo  # pinned
    finally:
        registry.unregister("echo-versions")
