"""The agent loop end to end: real Docker, real git, a real Prefect API, and a scripted
chat-completions server on 127.0.0.1 standing in for the planning model."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import agentic_cli
from llm_server import API_KEY
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.flow_runs import resume_flow_run
from pydantic import SecretStr

from prefect_agentic.blocks.budget import Budget
from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.flows.run_plan import RunReport, run_plan
from prefect_agentic.loop import LoopSettings
from prefect_agentic.pins import (
    VersionPinError,
    pins_from_run_started,
    pins_with_revisions,
    resolve_pins,
)
from prefect_agentic.plan import parse_plan
from prefect_agentic.record.audit import parse_log
from prefect_agentic.record.progress import StepEvent, StepStatus, subscribe
from prefect_agentic.record.store import AuditStore
from prefect_agentic.replay import replay_run
from prefect_agentic.secrets import REDACTED
from prefect_agentic.settings import agentic_home
from prefect_agentic.tools.registry import ToolRegistry, default_registry
from prefect_agentic.workspace import mounted, resolve_base, run_key

pytestmark = pytest.mark.usefixtures("prefect_api")

BUGGY = {
    "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["."]\n',
    "demo/__init__.py": "",
    "demo/calc.py": "def mean(values):\n    return sum(values) / (len(values) + 1)\n",
    "tests/test_calc.py": "from demo.calc import mean\n\n\ndef test_mean():\n    assert mean([1, 2, 3]) == 2\n",
}
PLAN_V1 = """
id: fix-mean
goal: Make the test suite pass
steps:
  - {id: note, tool: shell, writes_workspace: true, args: {command: "echo checked > NOTES.txt"}}
  - {id: tests, tool: pytest, depends_on: [note], success: {tests_failed: 0}}
"""
REPAIR = {"id": "fix-mean", "goal": "g", "planner": {"rationale": "divide by the count"}, "steps": [
    {"id": "repair", "tool": "shell", "writes_workspace": True,
     "args": {"command": "sed -i 's/(len(values) + 1)/len(values)/' demo/calc.py"}},
    {"id": "tests", "tool": "pytest", "depends_on": ["repair"], "success": {"tests_failed": 0}},
]}
NO_OP = {"id": "fix-mean", "goal": "g", "steps": [
    {"id": "tweak", "tool": "shell", "writes_workspace": True, "args": {"command": "true"}},
    {"id": "tests", "tool": "pytest", "depends_on": ["tweak"], "success": {"tests_failed": 0}},
]}


def loop_settings(server: Any, **kwargs: Any) -> LoopSettings:
    llm = LLMEndpoint(base_url=server.base_url, model="scripted-1", api_key=SecretStr(API_KEY),
                      prompt_price_per_1k=0.01, completion_price_per_1k=0.03)
    return LoopSettings(**{"llm": llm, "escalation_poll_seconds": 1, "escalation_timeout_seconds": 300, **kwargs})


def run(plan_text: str, repo: Path, image: str, loop: LoopSettings, **kwargs: Any) -> RunReport:
    state = run_plan(plan=parse_plan(plan_text), repo=str(repo), sandbox=SandboxSettings(image=image),
                     loop=loop, return_state=True, **kwargs)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, PlanRunFailed):
        return outcome.report  # type: ignore[return-value]
    assert isinstance(outcome, RunReport), outcome
    return outcome


def statuses(report: RunReport) -> list[tuple[str, str]]:
    return [(s.step_id, s.status.value) for s in report.steps]


def started_steps() -> tuple[list[str], Any]:
    started: list[str] = []

    def listen(event: StepEvent) -> None:
        if event.status is StepStatus.RUNNING:
            started.append(event.step_id)

    return started, subscribe(listen)


def test_a_tool_a_revision_brings_is_pinned_with_it_and_a_resume_checks_it(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server) -> None:
    """Versions pinned at the start cover the first plan; a revision's new tools are pinned when it is accepted."""
    revised = {**REPAIR, "steps": [*REPAIR["steps"], {"id": "status", "tool": "git", "depends_on": ["tests"],
                                                      "args": {"op": "status"}}]}
    llm_server.reply(revised)
    report = run(PLAN_V1, make_repo(BUGGY), sandbox_image, loop_settings(llm_server))
    assert report.ok and report.plan_version == 2, report
    records = parse_log(AuditStore().read_log(str(report.flow_run_id)))
    started = next(r for r in records if r.kind == "run_started")
    [revision] = [r for r in records if r.kind == "plan"]
    git_version = default_registry().get("git").version
    assert set(started.data["pins"]["tools"]) == {"shell", "pytest"}
    assert revision.data["pins"] == {"git": git_version}  # shell and pytest were pinned already
    pins = pins_with_revisions(pins_from_run_started(started.data), [revision.data])
    assert pins.tools["git"] == git_version
    # a worker whose pack no longer has that git adapter stops the resumed run under 'pinned'
    without = ToolRegistry([t for t in default_registry() if t.name != "git"])
    with pytest.raises(VersionPinError, match=f"tool 'git': pinned {git_version}, installed not installed"):
        resolve_pins(pins, without, "pinned", lambda ref: True, lambda: None)


def test_a_failed_step_is_replanned_and_the_new_version_completes_the_run(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="prefect_agentic.record")
    llm_server.reply(REPAIR)
    started, unsubscribe = started_steps()
    try:
        report = run(PLAN_V1, make_repo(BUGGY), sandbox_image, loop_settings(llm_server))
    finally:
        unsubscribe()
    assert report.ok, report
    assert report.plan_version == 2
    assert statuses(report) == [("note", "completed"), ("repair", "completed"), ("tests", "completed")]
    assert started == ["note", "tests", "repair", "tests"]  # 'note' ran once, never again
    [old_tests] = report.superseded
    assert old_tests.status is StepStatus.FAILED and "tests failed: 1, allowed at most 0" in old_tests.reason
    [revision] = report.revisions
    assert (revision.version, revision.reason, revision.steps) == (2, "step 'tests' failed", ["repair", "tests"])
    assert revision.planner.name == "llm" and revision.planner.rationale == "divide by the count"
    note, repair, _ = report.steps
    with mounted(Path(report.workspace)):  # the run unmounted its workspace when it ended
        final = subprocess.run(["git", "show", f"{report.final_snapshot}:demo/calc.py"], cwd=report.workspace,
                               capture_output=True, text=True, check=True).stdout
        ancestry = subprocess.run(["git", "merge-base", "--is-ancestor", note.snapshot, repair.snapshot],
                                  cwd=report.workspace, check=False)
    assert "/ len(values)" in final and report.final_snapshot == repair.snapshot
    assert ancestry.returncode == 0  # the revised work went on from the completed step's snapshot
    request = llm_server.user_messages(0)[0]
    assert "Failed step 'tests'" in request and "tests/test_calc.py::test_mean" in request
    assert "assert 1.5 == 2" in request  # the test output
    assert "+checked" in request  # the run's diff so far
    assert "step ids already taken: 'note'" in request
    plan_records = [r.getMessage() for r in caplog.records if r.getMessage().startswith("plan ")]
    assert len(plan_records) == 1 and "'version': 2" in plan_records[0]
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(report.flow_run_id).parameters
    assert stored["loop"]["llm"]["model"] == "scripted-1" and API_KEY not in str(stored)


def test_the_planner_sees_a_secret_a_failed_step_wrote_redacted(make_repo, sandbox_image, llm_server) -> None:  # type: ignore[no-untyped-def]
    # the prompt leaves the run for the model endpoint: the run's diff and the failed attempt's diff
    # (`write` put its secret into NOTES.txt, `check` then into CHECK.txt and failed) pass the redactor
    token = "tok-71ac0e5d2f"
    llm_server.reply({"id": "leaky", "goal": "g", "steps": [
        {"id": "check-again", "tool": "shell", "depends_on": ["write"], "args": {"command": "true"}}]})
    policy = ToolPolicy(secret_grants={"write": ["api-token"], "check": ["api-token"]})
    plan = parse_plan("""
id: leaky
goal: Check notes a step wrote its secret into
steps:
  - {id: write, tool: shell, writes_workspace: true, secrets: [api-token],
     args: {command: 'echo "token=$API_TOKEN" > NOTES.txt'}}
  - {id: check, tool: shell, depends_on: [write], writes_workspace: true, secrets: [api-token],
     args: {command: 'echo "check=$API_TOKEN" > CHECK.txt; exit 1'}}
""", policy=policy)
    state = run_plan(plan=plan, repo=str(make_repo({"README.md": "x\n"})), policy=policy,
                     secrets={"api-token": SecretStr(token)}, sandbox=SandboxSettings(image=sandbox_image),
                     loop=loop_settings(llm_server), return_state=True)
    assert statuses(state.result()) == [("write", "completed"), ("check-again", "completed")]
    request = llm_server.user_messages(0)[0]
    assert f"+token={REDACTED}" in request and f"+check={REDACTED}" in request and token not in request


def test_a_replan_waits_for_running_steps_and_keeps_what_they_completed(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server) -> None:
    llm_server.reply({"id": "par", "goal": "g", "steps": [
        {"id": "good", "tool": "shell", "args": {"command": "true"}},
        {"id": "after", "tool": "shell", "depends_on": ["good"], "args": {"command": "true"}}]})
    started, unsubscribe = started_steps()
    try:
        report = run("""
id: par
goal: one branch fails while the other still runs
steps:
  - {id: slow, tool: shell, args: {command: "sleep 3"}}
  - {id: bad, tool: shell, args: {command: "exit 1"}}
  - {id: after, tool: shell, depends_on: [bad], args: {command: "true"}}
""", make_repo({"f": "x"}), sandbox_image, loop_settings(llm_server))
    finally:
        unsubscribe()
    assert report.ok, report
    assert statuses(report) == [("slow", "completed"), ("good", "completed"), ("after", "completed")]
    assert sorted(started[:2]) == ["bad", "slow"] and started[2:] == ["good", "after"]
    assert report.steps[1].step_id == "good"
    request = llm_server.user_messages(0)[0]
    assert "- slow (shell)" in request and "Steps that did not run: after" in request


def test_replanning_stops_at_the_limit_with_a_clear_reason(make_repo, sandbox_image, llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.reply(NO_OP).reply(REPAIR)  # the second answer is never asked for
    report = run(PLAN_V1, make_repo(BUGGY), sandbox_image, loop_settings(llm_server, max_replans=1))
    assert not report.ok and report.plan_version == 2
    assert report.stopped == "step(s) 'tests' still failed after 1 re-plan(s), the limit"
    assert statuses(report) == [("note", "completed"), ("tweak", "completed"), ("tests", "failed")]
    assert [s.step_id for s in report.superseded] == ["tests"]
    assert len(llm_server.seen) == 1


def test_a_planner_that_only_answers_garbage_stops_the_run_saying_so(make_repo, sandbox_image, llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.reply("Sure! Here is your plan: step 1, fix it.").reply('{"steps": "fix it"}')
    report = run(PLAN_V1, make_repo(BUGGY), sandbox_image,
                 loop_settings(llm_server, planner_attempts=2))
    assert not report.ok and report.plan_version == 1
    assert statuses(report) == [("note", "completed"), ("tests", "failed")]
    assert report.stopped.startswith("re-planning after step(s) 'tests' failed did not work: "
                                     f"LLM endpoint {llm_server.base_url} (model scripted-1) "
                                     "gave no valid plan in 2 answer(s)")
    assert "steps: Input should be a valid list" in report.stopped
    assert "Invalid JSON" in llm_server.user_messages(1)[-1]


def test_replanning_is_charged_to_the_runs_cost_budget(make_repo, sandbox_image, llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.reply(REPAIR)
    report = run(PLAN_V1, make_repo(BUGGY), sandbox_image, loop_settings(llm_server),
                 budget=Budget(max_cost=0.001))
    assert report.plan_version == 2 and not report.ok
    assert report.stopped.startswith("budget exhausted (cost): cost limit of 0.001 reached (used 0.0")
    assert statuses(report) == [("note", "completed"), ("repair", "not_run"), ("tests", "not_run")]


def test_agentic_run_replans_with_a_saved_endpoint_block(make_repo, sandbox_image, llm_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    loop_settings(llm_server).llm.save("planner-llm", overwrite=True)
    llm_server.reply(REPAIR)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(PLAN_V1)
    result = agentic_cli("run", str(plan_file), "--repo", str(make_repo(BUGGY)), "--image", sandbox_image,
                         "--llm-block", "planner-llm", "--max-replans", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "plan v2 by llm after step 'tests' failed: repair, tests" in result.stdout
    assert "fix-mean v2" in result.stdout and "Run succeeded" in result.stdout
    missing = agentic_cli("run", str(plan_file), "--llm-block", "nope")
    assert missing.returncode == 2 and "--llm-block nope:" in missing.stderr


def test_agentic_draft_writes_a_validated_plan(llm_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    loop_settings(llm_server).llm.save("planner-llm", overwrite=True)
    llm_server.reply({"steps": []}).reply(REPAIR)
    out = tmp_path / "drafted.yaml"
    result = agentic_cli("draft", "Fix the mean function", "--llm-block", "planner-llm", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stderr and "(2 steps;" in result.stderr and "in 2 call(s)" in result.stderr
    drafted = parse_plan(out.read_text())
    assert drafted.id == "fix-the-mean-function" and drafted.planner.name == "llm"
    assert [s.id for s in drafted.steps] == ["repair", "tests"]


class Human:
    """Answers the next escalation through the Prefect API, as a person at the UI would."""

    def __init__(self, answer: dict[str, str], before: Any = None) -> None:
        self.answer, self.before = answer, before
        self.question: str | None = None
        self.error: BaseException | None = None
        self.earlier = {run.id for run in self._paused_runs()}  # other tests' runs still waiting
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            flow_run = self._wait_for_paused()
            if self.before:
                self.before()
            resume_flow_run(flow_run.id, run_input=self.answer)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by done()
            self.error = exc

    @staticmethod
    def _paused_runs() -> list[Any]:
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))

    def _wait_for_paused(self) -> Any:
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                paused = [run for run in self._paused_runs() if run.id not in self.earlier]
                if paused:
                    keyset = paused[0].state.state_details.run_input_keyset
                    try:
                        self.question = client.read_flow_run_input(paused[0].id, keyset["description"])
                        return paused[0]
                    except PrefectHTTPStatusError as exc:  # Prefect saves it just after pausing
                        if exc.response.status_code != 404:
                            raise
                time.sleep(0.5)
        raise TimeoutError("no flow run paused within 120 s")

    def done(self) -> None:
        self.thread.join(timeout=30)
        if self.error:
            raise self.error


GATED = """
id: gated
goal: Needs a human
steps:
  - {id: prepare, tool: shell, writes_workspace: true, args: {command: "echo ready > READY"}}
  - {id: check, tool: shell, depends_on: [prepare], args: {command: "test -f .agentic/go-ahead"}}
  - {id: after, tool: shell, depends_on: [check], args: {command: "cat READY"}}
"""


def test_escalation_retry_runs_the_failed_step_again_after_the_human_fixed_things(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image) -> None:
    repo = make_repo({"f": "x"})
    workspace = agentic_home() / "workspaces" / run_key("gated", repo, resolve_base(repo, "HEAD"))
    human = Human({"action": "retry"}, before=lambda: (workspace / ".agentic" / "go-ahead").touch())
    report = run(GATED, repo, sandbox_image,
                 LoopSettings(escalate=True, escalation_poll_seconds=1, escalation_timeout_seconds=300))
    human.done()
    assert "Step `check` (shell) failed" in human.question and "exit code 1, expected 0" in human.question
    assert "no LLM endpoint is set for re-planning" in human.question
    assert report.ok, report
    assert statuses(report) == [("prepare", "completed"), ("check", "completed"), ("after", "completed")]
    assert report.revisions[0].planner.name == "human"
    assert report.revisions[0].planner.rationale == "retry after step(s) 'check' failed"
    assert [s.status.value for s in report.superseded] == ["failed"]
    # the audit log holds the question, the answer and the wait, and replays to the same decisions
    [approval] = [r for r in parse_log(AuditStore().read_log(report.flow_run_id)) if r.kind == "approval"]
    assert approval.data["answer"]["action"] == "retry" and approval.data["wait_seconds"] > 0
    replayed = replay_run(AuditStore(), report.flow_run_id)
    assert replayed.same and replayed.replayed_status == "completed", replayed.differences


@pytest.mark.parametrize("action", ["skip", "abort"])
def test_escalation_skip_goes_on_without_the_step_and_abort_stops(make_repo, sandbox_image, action) -> None:  # type: ignore[no-untyped-def]
    human = Human({"action": action})
    report = run(GATED, make_repo({"f": "x"}), sandbox_image,
                 LoopSettings(escalate=True, escalation_poll_seconds=1, escalation_timeout_seconds=300))
    human.done()
    if action == "skip":
        assert report.ok and report.plan_version == 2
        assert statuses(report) == [("prepare", "completed"), ("after", "completed")]
        assert report.steps[1].output["stdout"] == "ready\n"  # ran on prepare's snapshot
    else:
        assert not report.ok and report.stopped == "aborted by a human after step(s) 'check' failed"
        assert statuses(report) == [("prepare", "completed"), ("check", "failed"), ("after", "not_run")]


def test_escalation_with_new_instructions_replans_with_them(make_repo, sandbox_image, llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.reply(REPAIR)
    human = Human({"action": "instruct", "instructions": "the divisor is off by one; use sed"})
    report = run(PLAN_V1, make_repo(BUGGY), sandbox_image,
                 loop_settings(llm_server, max_replans=0, escalate=True))
    human.done()
    assert "still failed after 0 re-plan(s), the limit" in human.question
    assert report.ok and report.plan_version == 2
    assert "Instructions from a human reviewer:\nthe divisor is off by one; use sed" in llm_server.user_messages(0)[0]
