"""The planner, the replay of its re-plans and the evaluator of its plans, with pydantic-ai's
test models: no HTTP, no Prefect, the same answers every time."""

from __future__ import annotations

import json

import pytest
from llm_server import ListRecorder
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import LLMOutputError
from prefect_agentic.evaluator import VerdictKind, evaluate
from prefect_agentic.llm.session import dump_response
from prefect_agentic.loop.replay import replan_from_log
from prefect_agentic.plan.models import Plan
from prefect_agentic.planners.failure import FailedStep, FailureContext
from prefect_agentic.planners.llm import LLMPlanner
from prefect_agentic.record.progress import StepStatus
from prefect_agentic.report import StepReport
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.workspace import ChangeSummary

ENDPOINT = LLMEndpoint(model="offline", prompt_price_per_1k=1.0, completion_price_per_1k=2.0)
GOOD = {"id": "ignored", "goal": "ignored", "planner": {"rationale": "lint then test"}, "steps": [
    {"id": "lint", "tool": "ruff", "args": {"mode": "check"}, "success": {"lint_violations": 0}},
    {"id": "tests", "tool": "pytest", "depends_on": ["lint"], "success": {"tests_failed": 0}},
]}


class Scripted:
    """A FunctionModel function: answers in order, keeps what it was asked."""

    def __init__(self, *answers: object) -> None:
        self.answers = [a if isinstance(a, str) else json.dumps(a) for a in answers]
        self.asked: list[list[ModelMessage]] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.asked.append(list(messages))
        return ModelResponse(parts=[TextPart(self.answers[len(self.asked) - 1])])


def feedback(messages: list[ModelMessage]) -> str:
    """What the last request told the model about its previous answer."""
    return "\n".join(p.model_response() if isinstance(p, RetryPromptPart) else str(getattr(p, "content", ""))
                     for p in messages[-1].parts)


def test_test_model_output_becomes_a_checked_plan() -> None:
    recorder = ListRecorder()
    planner = LLMPlanner(ENDPOINT, recorder=recorder, model=TestModel(custom_output_text=json.dumps(GOOD)))
    plan = planner.plan("Make ruff pass", plan_id="lint")
    assert (plan.id, plan.goal, plan.version) == ("lint", "Make ruff pass", 1)
    assert [s.id for s in plan.steps] == ["lint", "tests"]
    assert plan.planner and plan.planner.rationale == "lint then test"
    [call] = recorder.of("model_call")
    assert call["purpose"] == "plan" and call["cached"] is False and call["response"]["parts"]
    [charge] = recorder.of("budget")
    assert charge["source"] == "llm" and charge["cost"] == call["cost"] > 0


def test_every_problem_goes_back_to_the_model_and_the_fixed_answer_is_taken() -> None:
    unknown_tool = {**GOOD, "steps": [{"id": "edit", "tool": "sed", "args": {}}]}
    script = Scripted("not json", unknown_tool, GOOD)
    planner = LLMPlanner(ENDPOINT, model=FunctionModel(script))
    plan = planner.plan("Make ruff pass", plan_id="lint")
    assert [s.id for s in plan.steps] == ["lint", "tests"]
    assert "json_invalid" in feedback(script.asked[1])
    assert "steps[0] 'edit'.tool: unknown tool 'sed'" in feedback(script.asked[2])
    assert planner.usage.calls == 3


def test_the_policy_is_one_more_check_fed_back() -> None:
    policy = ToolPolicy(allowed_tools=["pytest", "shell"])
    tests_only = {**GOOD, "steps": [GOOD["steps"][1] | {"depends_on": []}]}
    script = Scripted(GOOD, tests_only)
    plan = LLMPlanner(ENDPOINT, policy=policy, model=FunctionModel(script)).plan("g", plan_id="p")
    assert [s.id for s in plan.steps] == ["tests"]
    assert "ruff" in feedback(script.asked[1])


def test_answers_that_stay_invalid_end_in_an_error_naming_the_last_problems() -> None:
    empty = {"id": "x", "goal": "g", "steps": []}
    script = Scripted(empty, empty, GOOD)
    with pytest.raises(LLMOutputError) as caught:
        LLMPlanner(ENDPOINT, max_attempts=2, model=FunctionModel(script)).plan("g", plan_id="p")
    assert len(script.asked) == 2
    assert caught.value.problems == ["steps: List should have at least 1 item after validation, not 0"]
    assert "gave no valid plan in 2 answer(s)" in str(caught.value)


def failure() -> FailureContext:
    plan = Plan.model_validate({k: v for k, v in GOOD.items() if k != "planner"} | {"id": "p", "goal": "g"})
    return FailureContext(
        plan=plan, completed=[StepReport(step_id="lint", tool="ruff", status=StepStatus.COMPLETED)],
        failed=[FailedStep(step=plan.step("tests"), reason="tests failed: 1, allowed at most 0")])


REVISED = {"id": "p", "goal": "g", "planner": {"rationale": "fix first"}, "steps": [
    {"id": "fix", "tool": "shell", "writes_workspace": True, "args": {"command": "true"}},
    {"id": "tests", "tool": "pytest", "depends_on": ["fix"], "success": {"tests_failed": 0}},
]}


def test_a_replan_keeps_the_completed_steps_and_tells_the_model_what_failed() -> None:
    script = Scripted(REVISED)
    plan = LLMPlanner(ENDPOINT, model=FunctionModel(script)).replan(failure())
    assert plan.version == 2 and [s.id for s in plan.steps] == ["lint", "fix", "tests"]
    assert plan.step("fix").depends_on == ["lint"]
    request = next(p.content for p in script.asked[0][0].parts if isinstance(p, UserPromptPart))
    assert "Failed step 'tests'" in request and "step ids already taken: 'lint'" in request


def test_replay_remakes_the_replan_from_recorded_answers_and_sees_a_changed_answer() -> None:
    recorder = ListRecorder()
    taken = {**REVISED, "steps": [{"id": "lint", "tool": "shell", "args": {"command": "true"}}]}
    adopted = LLMPlanner(ENDPOINT, recorder=recorder, model=FunctionModel(Scripted(taken, REVISED))).replan(failure())
    calls = recorder.of("model_call")
    assert len(calls) == 2  # the first answer re-used a completed step's id and was sent back
    statuses = {"lint": "completed", "tests": "failed"}
    replayed, problem, used = replan_from_log(failure().plan, statuses, calls, ToolPolicy(), ["tests"])
    assert problem == "" and used == 2 and replayed == adopted

    edited = [calls[0], {**calls[1], "response": dump_response(ModelResponse(parts=[TextPart(json.dumps(
        {**REVISED, "planner": {"rationale": "something else"}}))]))}]
    replayed, _, _ = replan_from_log(failure().plan, statuses, edited, ToolPolicy(), ["tests"])
    assert replayed is not None and replayed != adopted
    assert replayed.planner and replayed.planner.rationale == "something else"


def test_the_evaluator_judges_a_planned_step_by_its_criteria() -> None:
    plan = LLMPlanner(ENDPOINT, model=TestModel(custom_output_text=json.dumps(GOOD))).plan("g", plan_id="p")
    tests = plan.step("tests")
    pytest_tool = default_registry().get("pytest")
    criteria = tests.success.merged_over(dict(pytest_tool.default_success))
    failing = pytest_tool.Output.model_validate({"exit_code": 1, "log": "", "passed": 2, "failed": 1,
                                                 "errors": 0, "skipped": 0, "tests_failed": 1})
    verdict = evaluate(criteria, failing, ChangeSummary())
    assert verdict.kind is not VerdictKind.OK and "tests failed: 1, allowed at most 0" in verdict.summary()
    passing = failing.model_copy(update={"exit_code": 0, "failed": 0, "tests_failed": 0})
    assert evaluate(criteria, passing, ChangeSummary()).ok
