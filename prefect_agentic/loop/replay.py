"""Re-make the agent loop's re-plans from the model answers in the audit log, without a model.

Each re-plan of a recorded run left its model answers in the log
(``model_call`` records, purpose ``replan``) before the plan version it
adopted (a ``plan`` record). The replay feeds those answers, in order, to
the real planner through pydantic-ai's ``FunctionModel``: the same output
validation, the same checks against the registry and the run's policy, the
same merge with the completed steps. The plan it comes to must be the plan
the run adopted; any difference is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import LLMError
from prefect_agentic.llm.session import load_response
from prefect_agentic.plan.models import Plan
from prefect_agentic.planners.failure import FailedStep, FailureContext
from prefect_agentic.planners.llm import LLMPlanner
from prefect_agentic.record.progress import StepStatus
from prefect_agentic.report import StepReport

DONE = ("completed", "cached")


class _Silent:
    def record(self, kind: str, data: Mapping[str, Any], *, step_id: str | None = None) -> None:
        pass


class RecordedAnswers:
    """A pydantic-ai function model that answers with the recorded responses, in order."""

    def __init__(self, responses: Sequence[ModelResponse]) -> None:
        self.responses = list(responses)
        self.used = 0

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if self.used >= len(self.responses):
            raise LLMError(f"the planner asked for answer {self.used + 1}, the log holds "
                           f"{len(self.responses)}")
        self.used += 1
        return self.responses[self.used - 1]


def replan_from_log(current: Plan, statuses: Mapping[str, str], calls: Sequence[Mapping[str, Any]],
                    policy: ToolPolicy, failed: Sequence[str]) -> tuple[Plan | None, str, int]:
    """The plan the planner makes of ``calls`` (model_call records); (plan, problem, answers used)."""
    first = calls[0]
    endpoint = LLMEndpoint(provider=first.get("provider") or "openai", model=first.get("model") or "?",
                           base_url=first.get("endpoint"))
    answers = RecordedAnswers([load_response(c["response"]) for c in calls])
    planner = LLMPlanner(endpoint, recorder=_Silent(), policy=policy, max_attempts=_attempts(calls),
                         model=FunctionModel(answers, model_name=endpoint.model))
    completed = [StepReport(step_id=s.id, tool=s.tool, status=StepStatus(statuses[s.id]))
                 for s in current.steps if statuses.get(s.id) in DONE]
    failure = FailureContext(plan=current, completed=completed, failed=[
        FailedStep(step=current.step(i), reason="(replay)") for i in failed if _has(current, i)])
    try:
        return planner.replan_now(failure), "", answers.used
    except LLMError as exc:
        return None, str(exc), answers.used


def _attempts(calls: Sequence[Mapping[str, Any]]) -> int:
    return max(3, len(calls))


def _has(plan: Plan, step_id: str) -> bool:
    return any(s.id == step_id for s in plan.steps)


def same_plan(recorded: Mapping[str, Any], replayed: Plan) -> bool:
    return Plan.model_validate(recorded) == replayed

