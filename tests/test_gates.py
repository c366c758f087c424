"""Approval gates end to end: real Docker, real git, and a real Prefect server whose API
answers the gates the way the UI's resume form does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import TWO_GATES, Approver
from llm_server import API_KEY
from pydantic import SecretStr
from test_agent_loop import run as run_with_loop
from test_agent_loop import statuses

from prefect_agentic.blocks import GateDefaults, LLMEndpoint, SandboxSettings, ToolPolicy
from prefect_agentic.flows.run_plan import RunReport, run_plan
from prefect_agentic.gates.store import ApprovalStore
from prefect_agentic.loop import LoopSettings
from prefect_agentic.plan import parse_plan
from prefect_agentic.scheduler import StepScheduler
from prefect_agentic.secrets import REDACTED
from prefect_agentic.workspace import resolve_base, run_key

pytestmark = pytest.mark.usefixtures("prefect_api")

FAST = GateDefaults(poll_interval_seconds=0.5, timeout_seconds=60)
SHIP = """
id: ship
goal: Ship the release notes
steps:
  - {id: notes, tool: shell, writes_workspace: true,
     args: {command: "printf 'line\\n%.0s' $(seq 100) > NOTES.md"}}
  - {id: publish, tool: shell, depends_on: [notes], requires_approval: true,
     description: Publish the notes, args: {command: "wc -l NOTES.md"}}
  - {id: announce, tool: shell, depends_on: [publish], args: {command: "echo announced"}}
"""
PUSH = """
id: push
goal: Push the branch
steps:
  - {id: mark, tool: shell, writes_workspace: true, args: {command: "echo pushed > PUSHED"}}
  - {id: push, tool: shell, depends_on: [mark], writes_workspace: true,
     args: {command: "echo 'git push origin main' >> PUSHED"}}
"""


def run(plan_text: str, repo: Path, image: str, **kwargs: Any) -> RunReport:
    """The run's report, however it ended (gates default to a fast poll)."""
    return run_with_loop(plan_text, repo, image, kwargs.pop("loop", None), **{"gates": FAST, **kwargs})


def approvals(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The data of every ``approval`` record, as the recorder got it."""
    return [r.args[2] for r in caplog.records
            if r.name == "prefect_agentic.record" and r.args and r.args[0] == "approval"]


@pytest.fixture(autouse=True)
def _records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="prefect_agentic.record")


def test_an_approved_step_runs_after_the_approver_read_the_review(make_repo, sandbox_image, caplog) -> None:  # type: ignore[no-untyped-def]
    approver = Approver({"decision": "approve", "approver": "ada", "reason": "notes look right"})
    report = run(SHIP, make_repo({"README.md": "x\n"}), sandbox_image,
                 gates=GateDefaults(poll_interval_seconds=0.5, diff_lines=20))
    approver.done()
    assert report.ok, report
    assert statuses(report) == [("notes", "completed"), ("publish", "completed"), ("announce", "completed")]
    review = approver.questions[0]
    assert "### Approve step `publish` of plan `ship`?" in review
    assert "**Goal:** Ship the release notes" in review
    assert "operation `shell:run`: Publish the notes" in review and "wc -l NOTES.md" in review
    assert "files touched so far: **1**, lines changed: **100** (+100 −0)" in review
    assert "`requires_approval` (set on the step)" in review
    assert "(first 20 of 106 lines — [full diff](" in review and "+line" in review
    [record] = approvals(caplog)
    assert record["decision"] == "approve" and record["approver"] == "ada"
    assert record["reason"] == "notes look right" and record["source"] == "form"
    assert record["gate"] == approver.keys[0] and record["timeout_seconds"] == 3600
    assert 0 < record["wait_seconds"] < 60 and record["answered_at"] > record["asked_at"]


def test_a_rejected_step_does_not_run_and_the_run_keeps_its_work(make_repo, sandbox_image, caplog) -> None:  # type: ignore[no-untyped-def]
    approver = Approver({"decision": "reject", "approver": "bob", "reason": "not on a Friday"})
    report = run(PUSH, make_repo({"README.md": "x\n"}), sandbox_image)
    approver.done()
    assert not report.ok
    assert statuses(report) == [("mark", "completed"), ("push", "not_run")]
    assert report.stopped == "step 'push' rejected by bob: not on a Friday"
    assert report.final_snapshot == report.steps[0].snapshot  # mark's work is kept
    review = approver.questions[0]
    assert "echo 'git push origin main' >> PUSHED" in review
    assert "destructive operations: `push` (" in review and "policy rules involved: `push`" in review
    [record] = approvals(caplog)
    assert record["decision"] == "reject" and record["approver"] == "bob"
    assert record["rules"] == ["push"] and record["requires_approval"] is False


def test_no_answer_before_the_timeout_is_a_recorded_rejection(make_repo, sandbox_image, caplog) -> None:  # type: ignore[no-untyped-def]
    report = run(PUSH, make_repo({"README.md": "x\n"}), sandbox_image,
                 gates=GateDefaults(poll_interval_seconds=0.5, step_timeouts={"pu*": 2}))
    assert statuses(report) == [("mark", "completed"), ("push", "not_run")]
    assert report.stopped == "step 'push' was not approved: no answer within 2s (counts as a rejection)"
    [record] = approvals(caplog)
    assert record["decision"] == "timeout" and record["approver"] is None
    assert record["timeout_seconds"] == 2 and record["wait_seconds"] >= 2


def test_requested_changes_stop_a_run_without_a_planner(make_repo, sandbox_image, caplog) -> None:  # type: ignore[no-untyped-def]
    approver = Approver({"decision": "request_changes", "approver": "cy", "reason": "count words"})
    report = run(SHIP, make_repo({"README.md": "x\n"}), sandbox_image)
    approver.done()
    assert statuses(report) == [("notes", "completed"), ("publish", "not_run"), ("announce", "not_run")]
    assert report.stopped == ("changes to step 'publish' requested by cy: count words; the run has no "
                              "LLM planner to re-plan, so it stops here")
    assert approvals(caplog)[0]["decision"] == "request_changes"


def test_requested_changes_are_replanned_by_the_llm_planner(make_repo, sandbox_image, llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.reply({"id": "ship", "goal": "g", "planner": {"rationale": "count words instead"},
                      "steps": [{"id": "publish-words", "tool": "shell", "args": {"command": "wc -w NOTES.md"}}]})
    approver = Approver({"decision": "request_changes", "approver": "cy", "reason": "count words",
                         "instructions": "use wc -w"})
    llm = LLMEndpoint(base_url=llm_server.base_url, model="scripted-1", api_key=SecretStr(API_KEY))
    report = run(SHIP, make_repo({"README.md": "x\n"}), sandbox_image, loop=LoopSettings(llm=llm))
    approver.done()
    assert report.ok and report.plan_version == 2, report
    assert statuses(report) == [("notes", "completed"), ("publish-words", "completed")]
    assert report.steps[1].output["stdout"].strip() == "100 NOTES.md"
    prompt = llm_server.user_messages(0)[0]
    assert "Failed step 'publish'" in prompt and "requested changes before it ran" in prompt
    assert "+++ b/NOTES.md" in prompt  # the run's diff so far
    assert "Instructions from a human reviewer:\ncount words\nuse wc -w" in prompt


LEAKY = """
id: leaky
goal: Publish notes a step wrote its secret into
steps:
  - {id: notes, tool: shell, writes_workspace: true, secrets: [api-token],
     args: {command: 'echo "token=$API_TOKEN" > NOTES.md'}}
  - {id: publish, tool: shell, depends_on: [notes], requires_approval: true, args: {command: "wc -l NOTES.md"}}
"""


def test_the_approver_and_the_planner_see_a_secret_a_step_wrote_redacted(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server) -> None:
    # the review (form, notice, diff artifact) and the model's prompt leave the run
    token = "tok-5e0d83b1c9"
    llm_server.reply({"id": "leaky", "goal": "g", "planner": {"rationale": "count words instead"},
                      "steps": [{"id": "publish-words", "tool": "shell", "args": {"command": "wc -w NOTES.md"}}]})
    approver = Approver({"decision": "request_changes", "approver": "cy", "reason": "count words"})
    llm = LLMEndpoint(base_url=llm_server.base_url, model="scripted-1", api_key=SecretStr(API_KEY))
    policy = ToolPolicy(secret_grants={"notes": ["api-token"]})
    state = run_plan(plan=parse_plan(LEAKY, policy=policy), repo=str(make_repo({"README.md": "x\n"})),
                     sandbox=SandboxSettings(image=sandbox_image), policy=policy, gates=FAST,
                     secrets={"api-token": SecretStr(token)}, loop=LoopSettings(llm=llm), return_state=True)
    approver.done()
    report = state.result()
    assert statuses(report) == [("notes", "completed"), ("publish-words", "completed")]
    review, prompt = approver.questions[0], llm_server.user_messages(0)[0]
    assert f"+token={REDACTED}" in review and token not in review
    assert f"+token={REDACTED}" in prompt and token not in prompt


def test_an_answer_the_run_cannot_use_is_asked_again(make_repo, sandbox_image) -> None:  # type: ignore[no-untyped-def]
    approver = Approver({"decision": "reject", "approver": "dee"},
                        {"decision": "approve", "approver": "dee", "reason": "fine after all"})
    report = run(SHIP, make_repo({"README.md": "x\n"}), sandbox_image)
    approver.done()
    assert report.ok
    assert approver.keys[1] == approver.keys[0] + "-2"
    assert "The last answer could not be used: a rejection needs a reason" in approver.questions[1]


def test_two_gates_in_one_run_and_a_rerun_honours_the_approval_already_given(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, caplog) -> None:
    repo = make_repo({"README.md": "x\n"})
    first = Approver({"decision": "approve", "approver": "eve"},
                     {"decision": "reject", "approver": "eve", "reason": "wait for CI"})
    report = run(TWO_GATES, repo, sandbox_image)
    first.done()
    assert statuses(report) == [("first", "completed"), ("second", "not_run")]
    assert len(set(first.keys)) == 2

    caplog.clear()
    again = Approver({"decision": "approve", "approver": "eve", "reason": "CI is green"})
    report = run(TWO_GATES, repo, sandbox_image)
    again.done()
    assert report.ok and statuses(report) == [("first", "cached"), ("second", "completed")]
    assert again.keys == [first.keys[1]]  # only the rejected gate was asked again
    honoured, asked = approvals(caplog)
    assert honoured["source"] == "recorded" and honoured["gate"] == first.keys[0]
    assert honoured["approver"] == "eve" and "honoured_at" in honoured
    assert asked["decision"] == "approve" and asked["reason"] == "CI is green"
    store = ApprovalStore(run_key("two-gates", repo, resolve_base(repo, "HEAD")))
    assert store.get(first.keys[1])["reason"] == "CI is green"


def test_the_policy_may_auto_approve_an_operation_without_asking(make_repo, sandbox_image, caplog) -> None:  # type: ignore[no-untyped-def]
    report = run(PUSH, make_repo({"README.md": "x\n"}), sandbox_image,
                 policy=ToolPolicy(auto_approve=["push"]))
    assert report.ok
    [record] = approvals(caplog)
    assert record["approver"] == "policy:auto_approve" and record["source"] == "policy"


def test_a_gated_step_never_runs_without_a_gate(make_repo, sandbox_image) -> None:  # type: ignore[no-untyped-def]
    from prefect import flow

    from prefect_agentic.compiler import compile_plan
    from prefect_agentic.executor import RunContext, close_run_resources
    from prefect_agentic.workspace import Workspace

    repo = make_repo({"README.md": "x\n"})
    base = resolve_base(repo, "HEAD")
    workspace = Workspace.prepare(repo, base, repo.parent / "ws")
    context = RunContext(run_key="ungated", plan_id="ship", workspace=workspace.path,
                         workspace_epoch=workspace.epoch, base_snapshot=base,
                         sandbox=SandboxSettings(image=sandbox_image))

    @flow
    def without_gates() -> dict[str, Any]:
        try:
            return StepScheduler(compile_plan(parse_plan(SHIP), ToolPolicy()), context).run_all()
        finally:
            close_run_resources("ungated")

    reports = without_gates()
    assert reports["notes"].ok and reports["publish"].status.value == "failed"
    assert ("denied by policy rule 'approval': step 'publish' needs approval and no approval gate "
            "approved it in this run") in reports["publish"].reason
