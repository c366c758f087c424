"""llm_malformed: a model's answers arrive malformed; the planner and propose_patch feed each one
back (validation retries) or end in a clear error, never a crash. Real HTTP to the scripted
chat-completions server; propose_patch on real Docker and git."""

from __future__ import annotations

from typing import Any

import pytest
from llm_server import ListRecorder
from test_llm_planner import GOOD, failure_context, planner
from test_propose_patch import BUGGY, GOOD_DIFF, PLAN, endpoint_block  # noqa: F401  (a fixture)

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.chaos import ChaosSpec
from prefect_agentic.chaos.llm import spoiled_answers
from prefect_agentic.errors import LLMOutputError
from prefect_agentic.plan import parse_plan

pytestmark = pytest.mark.usefixtures("prefect_api")


def spec(*faults: dict[str, Any]) -> ChaosSpec:
    return ChaosSpec.model_validate({"seed": 0, "faults": [{"kind": "llm_malformed", **f} for f in faults]})


def test_each_malformed_answer_goes_back_to_the_model_and_the_next_good_one_is_the_plan(llm_server) -> None:  # type: ignore[no-untyped-def]
    for _ in range(4):
        llm_server.reply(GOOD)
    recorder = ListRecorder()
    faults = spec({"mode": "invalid_json", "attempts": [1]}, {"mode": "schema_violation", "attempts": [2]},
                  {"mode": "cycle", "attempts": [3]})
    with spoiled_answers(faults, recorder):
        plan = planner(llm_server, recorder, max_attempts=4).plan("Make ruff pass", plan_id="fix-lint")
    assert [s.id for s in plan.steps] == ["lint", "fix", "tests"]
    assert len(llm_server.seen) == 4
    assert [(f["mode"], f["tool"], f["attempt"]) for f in recorder.of("chaos_fault")] == [
        ("invalid_json", "llm.plan", 1), ("schema_violation", "llm.plan", 2), ("cycle", "llm.plan", 3)]
    assert "Invalid JSON" in llm_server.user_messages(1)[-1]
    assert "steps: Input should be a valid list" in llm_server.user_messages(2)[-1]
    assert "cycle" in llm_server.user_messages(3)[-1]


def test_a_model_that_only_answers_malformed_ends_in_a_clear_error(llm_server) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        llm_server.reply(GOOD)
    recorder = ListRecorder()
    with spoiled_answers(spec({"mode": "empty"}), recorder), pytest.raises(LLMOutputError) as caught:
        planner(llm_server, recorder, max_attempts=2).plan("Make ruff pass")
    assert "gave no valid plan in 2 answer(s)" in str(caught.value)
    assert len(recorder.of("chaos_fault")) == 2


def test_a_replan_survives_a_malformed_first_answer(llm_server) -> None:  # type: ignore[no-untyped-def]
    revised = {"id": "x", "goal": "g", "steps": [{"id": "repair", "tool": "shell", "writes_workspace": True,
                                                  "args": {"command": "true"}}]}
    llm_server.reply(revised).reply(revised)
    recorder = ListRecorder()
    with spoiled_answers(spec({"mode": "cycle", "tools": "llm.replan", "attempts": [1]}), recorder):
        plan = planner(llm_server, recorder).replan_now(failure_context())
    assert plan.version == 2 and [s.id for s in plan.steps] == ["lint", "fix", "repair"]
    assert [(f["tool"], f["mode"]) for f in recorder.of("chaos_fault")] == [("llm.replan", "cycle")]


@pytest.mark.usefixtures("endpoint_block")
def test_propose_patch_in_a_chaos_run_retries_a_malformed_answer_then_applies_the_next(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server, tmp_path) -> None:
    from prefect_agentic.executor import (
        RunContext,
        close_run_resources,
        execute_step,
        run_resources,
    )
    from prefect_agentic.workspace import Workspace, resolve_base

    llm_server.reply({"summary": "s", "diff": GOOD_DIFF}).reply({"summary": "fix", "diff": GOOD_DIFF})
    repo = make_repo(BUGGY)
    base = resolve_base(repo, "HEAD")
    settings = SandboxSettings(image=sandbox_image)
    ws = Workspace.prepare(repo, base, tmp_path / "ws", settings.workspace_owner())
    run_ctx = RunContext(run_key="chaos-patch", plan_id="p", workspace=ws.path, workspace_epoch=ws.epoch,
                         base_snapshot=base, sandbox=settings,
                         chaos=spec({"mode": "invalid_json", "tools": "llm.patch", "attempts": [1]}))
    recorder = ListRecorder()
    run_resources(run_ctx).recorder = recorder
    try:
        result = execute_step(parse_plan(PLAN).step("patch"), run_ctx, base, 1)
    finally:
        close_run_resources("chaos-patch")
    assert result.output["summary"] == "fix" and result.output["answers"] == 2
    [fault] = recorder.of("chaos_fault")
    assert (fault["tool"], fault["mode"], fault["attempt"]) == ("llm.patch", "invalid_json", 1)
    assert "Invalid JSON" in llm_server.user_messages(1)[-1]


def test_a_chaos_runs_replanner_gets_a_cyclic_plan_first_and_replans_with_the_next_answer(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server) -> None:
    from test_agent_loop import BUGGY as FAILING, PLAN_V1, REPAIR, loop_settings, run, statuses

    from prefect_agentic.chaos import invariants as inv
    from prefect_agentic.record.audit import parse_log
    from prefect_agentic.record.store import AuditStore

    llm_server.reply(REPAIR).reply(REPAIR)
    report = run(PLAN_V1, make_repo(FAILING), sandbox_image, loop_settings(llm_server),
                 chaos=spec({"mode": "cycle", "tools": "llm.replan", "attempts": [1]}))
    assert report.ok, report
    assert report.plan_version == 2
    assert statuses(report) == [("note", "completed"), ("repair", "completed"), ("tests", "completed")]
    assert "cycle" in llm_server.user_messages(1)[-1]  # the cyclic plan's problem went back to the model
    records = parse_log(AuditStore().read_log(report.flow_run_id))
    faults = [(r.step, r.data["tool"], r.data["mode"]) for r in records if r.kind == "chaos_fault"]
    assert faults == [(None, "llm.replan", "cycle")]
    assert inv.fault_outcomes(records, 0) == {"llm_malformed": inv.FaultOutcomes(injected=1, recovered=1)}
