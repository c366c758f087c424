"""The LLM planner over real HTTP against a local chat-completions server with scripted answers.

Each test's server listens on a new port, and the base URL is part of every
model call's cache key, so no test reads another test's cached answers."""

from __future__ import annotations

import json

import pytest
from llm_server import API_KEY, ListRecorder
from pydantic import SecretStr

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.errors import LLMOutputError, LLMRequestError, LLMUnavailableError
from prefect_agentic.plan.models import Plan
from prefect_agentic.planners.failure import FailedStep, FailureContext
from prefect_agentic.planners.llm import LLMPlanner, slug
from prefect_agentic.record.progress import StepStatus
from prefect_agentic.report import StepReport

pytestmark = pytest.mark.usefixtures("prefect_api")  # every model request is a Prefect task

GOOD = {
    "id": "whatever-the-model-says",
    "goal": "Make ruff pass",
    "planner": {"rationale": "lint, fix, then prove the tests still pass"},
    "steps": [
        {"id": "lint", "tool": "ruff", "args": {"mode": "check"}},
        {"id": "fix", "tool": "ruff", "args": {"mode": "fix"}, "depends_on": ["lint"],
         "writes_workspace": True, "success": {"lint_violations": 0}},
        {"id": "tests", "tool": "pytest", "depends_on": ["fix"], "success": {"tests_failed": 0}},
    ],
}


def planner(server, recorder=None, **kwargs) -> LLMPlanner:  # type: ignore[no-untyped-def]
    endpoint = LLMEndpoint(base_url=server.base_url, model="scripted-1", api_key=SecretStr(API_KEY),
                           prompt_price_per_1k=0.01, completion_price_per_1k=0.03)
    return LLMPlanner(endpoint, recorder=recorder, **kwargs)


def test_a_valid_answer_becomes_a_checked_plan_stamped_with_the_planner(llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.reply(GOOD)
    recorder = ListRecorder()
    plan = planner(llm_server, recorder).plan("Make ruff pass on the demo package", plan_id="fix-lint")
    assert plan.id == "fix-lint" and plan.version == 1
    assert plan.goal == "Make ruff pass on the demo package"
    assert [s.id for s in plan.steps] == ["lint", "fix", "tests"]
    assert plan.planner and (plan.planner.name, plan.planner.version) == ("llm", "2.0.0")
    assert plan.planner.rationale == "lint, fix, then prove the tests still pass"
    body = llm_server.seen[0].body
    assert body["response_format"]["json_schema"]["name"] == "plan"
    schema = json.dumps(body["response_format"]["json_schema"]["schema"])
    assert '"ruff"' in schema and '"writes_workspace"' in schema
    system = body["messages"][0]["content"]
    assert "- pytest (v1.0.0)" in system and "writes_workspace" in system
    assert "Use the plan id 'fix-lint'" in body["messages"][1]["content"]
    [charge] = recorder.of("budget")
    assert charge["purpose"] == "plan" and charge["model"] == "scripted-1" and charge["cost"] > 0


def test_malformed_json_is_fed_back_and_the_next_answer_is_used(llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.reply('{"id": "x", "steps": [').reply("```json\n" + json.dumps(GOOD) + "\n```")
    p = planner(llm_server)
    plan = p.plan("Make ruff pass", plan_id="fix-lint")
    assert [s.id for s in plan.steps] == ["lint", "fix", "tests"]
    second = llm_server.seen[1].body["messages"]
    assert second[2] == {"role": "assistant", "content": '{"id": "x", "steps": ['}
    assert "Invalid JSON: EOF while parsing a list at line 1 column 22" in second[-1]["content"]
    assert p.usage.calls == 2 and p.usage.cost > 0


def test_schema_and_meaning_violations_are_fed_back_with_their_places(llm_server) -> None:  # type: ignore[no-untyped-def]
    bad = {"id": "x", "goal": "g", "steps": [
        {"id": "fix", "tool": "ruff", "args": {"mode": "fix"}},
        {"id": "edit", "tool": "sed", "args": {}},
        {"id": "Tests", "tool": "pytest", "retries": -1},
    ]}
    llm_server.reply(bad).reply({**bad, "steps": bad["steps"][:2]}).reply(GOOD)
    plan = planner(llm_server).plan("Make ruff pass", plan_id="fix-lint")
    assert plan.steps[1].writes_workspace
    structure = llm_server.user_messages(1)[-1]
    assert "steps[2] 'Tests'.id: String should match pattern" in structure
    assert "steps[2] 'Tests'.retries: Input should be greater than or equal to 0" in structure
    meaning = llm_server.user_messages(2)[-1]
    assert "steps[0] 'fix'.writes_workspace: this 'ruff' call changes files" in meaning
    assert "steps[1] 'edit'.tool: unknown tool 'sed'" in meaning


def test_answers_that_stay_invalid_end_in_a_clear_error_after_the_bound(llm_server) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        llm_server.reply({"id": "x", "goal": "g", "steps": []})
    llm_server.reply(GOOD)  # never asked for
    with pytest.raises(LLMOutputError) as caught:
        planner(llm_server, max_attempts=3).plan("Make ruff pass")
    assert len(llm_server.seen) == 3
    assert caught.value.problems == ["steps: List should have at least 1 item after validation, not 0"]
    assert f"LLM endpoint {llm_server.base_url} (model scripted-1) gave no valid plan in 3 answer(s)" in str(caught.value)


def failure_context() -> FailureContext:
    plan = Plan.model_validate({k: v for k, v in GOOD.items() if k != "planner"} | {"id": "fix-lint"})
    done = [StepReport(step_id="lint", tool="ruff", status=StepStatus.COMPLETED, snapshot="a" * 40),
            StepReport(step_id="fix", tool="ruff", status=StepStatus.CACHED, snapshot="b" * 40)]
    failed = FailedStep(step=plan.step("tests"), reason="tests failed: 1, allowed at most 0",
                        output={"exit_code": 1, "tests_failed": 1, "failing_tests": ["tests/test_calc.py::test_mean"],
                                "log": "E   assert 2.5 == 2"})
    return FailureContext(plan=plan, failed=[failed], completed=done,
                          diff="--- a/demo/calc.py\n+++ b/demo/calc.py\n-import sys\n")


def test_a_replan_keeps_completed_steps_and_continues_after_them(llm_server) -> None:  # type: ignore[no-untyped-def]
    taken = {"id": "x", "goal": "g", "steps": [{"id": "fix", "tool": "shell", "args": {"command": "true"}}]}
    revised = {"id": "x", "goal": "g", "planner": {"rationale": "repair the mean"}, "steps": [
        {"id": "repair", "tool": "shell", "args": {"command": "sed -i s/x/y/ demo/calc.py"},
         "writes_workspace": True},
        {"id": "tests", "tool": "pytest", "depends_on": ["repair"], "success": {"tests_failed": 0}},
    ]}
    llm_server.reply(taken).reply(revised)
    recorder = ListRecorder()
    plan = planner(llm_server, recorder).replan(failure_context())
    assert plan.id == "fix-lint" and plan.version == 2 and plan.planner.rationale == "repair the mean"
    assert [s.id for s in plan.steps] == ["lint", "fix", "repair", "tests"]
    assert plan.step("repair").depends_on == ["fix"]  # the frontier of what completed
    assert plan.step("fix") == failure_context().plan.step("fix")
    request = llm_server.user_messages(0)[0]
    assert "Failed step 'tests'" in request and "tests failed: 1, allowed at most 0" in request
    assert "E   assert 2.5 == 2" in request and "tests/test_calc.py::test_mean" in request
    assert "-import sys" in request and "step ids already taken: 'lint', 'fix'" in request
    assert "steps: id 'fix' is used by 2 steps" in llm_server.user_messages(1)[-1]
    assert len(recorder.of("budget")) == 2


def test_slug_makes_a_valid_plan_id() -> None:
    assert slug("Fix the flaky test in calc.py!") == "fix-the-flaky-test-in-calc-py"
    assert slug("???") == "plan"


def test_a_429_is_retried_after_the_servers_retry_after_and_then_answered(llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.fail(429, "slow down", headers={"Retry-After": "0"}).reply(GOOD)
    p = planner(llm_server)
    assert [s.id for s in p.plan("Make ruff pass", plan_id="fix-lint").steps] == ["lint", "fix", "tests"]
    assert len(llm_server.seen) == 2 and p.usage.calls == 1


def test_a_refused_request_is_an_error_quoting_the_server(llm_server) -> None:  # type: ignore[no-untyped-def]
    endpoint = LLMEndpoint(base_url=llm_server.base_url, model="scripted-1", api_key="wrong-key")
    with pytest.raises(LLMRequestError) as caught:
        LLMPlanner(endpoint).plan("Make ruff pass")
    assert "refused the request with HTTP 401" in str(caught.value) and "invalid api key" in str(caught.value)
    assert len(llm_server.seen) == 1  # a 401 is not retried


def test_a_closed_port_is_retried_then_reported_unavailable() -> None:
    endpoint = LLMEndpoint(base_url="http://127.0.0.1:9/v1", model="m", max_retries=1)
    with pytest.raises(LLMUnavailableError, match=r"cannot be reached after max_retries=1"):
        LLMPlanner(endpoint).plan("Make ruff pass")


def test_500s_are_retried_a_bounded_number_of_times_then_reported_unavailable(llm_server) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        llm_server.fail(500, "overloaded", headers={"Retry-After": "0"})
    endpoint = LLMEndpoint(base_url=llm_server.base_url, model="scripted-1", api_key=API_KEY, max_retries=2)
    with pytest.raises(LLMUnavailableError) as caught:
        LLMPlanner(endpoint).plan("Make ruff pass")
    assert len(llm_server.seen) == 3 and "max_retries=2" in str(caught.value)
