"""The LLM planner: a plan, or a revised plan after a failure, from a language model.

A pydantic-ai agent asks for the plan as typed output (the plan's JSON
Schema, with every registered tool's argument schema); each answer is
validated like any plan file (structure with pydantic, meaning with
``check_plan``), and every problem goes back to the model for another try,
a bounded number of times (pydantic-ai's output retries). A re-plan keeps
the completed steps as they are: the model only writes the remaining work,
and the check runs on the merged next version.

Every model request is durable (see ``llm.durable``). A re-plan is durable
as a whole too: a Prefect task keyed on the situation it answers (the plan,
the completed steps and their snapshots, the failed steps, the run's diff,
the reviewer's instructions, the endpoint), so a resumed run that reaches
the same failure takes the same plan without asking again, even when the
failed step's output differs in its timings.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from prefect import task
from prefect.context import TaskRunContext
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.models import Model

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import LLMOutputError, PlanError
from prefect_agentic.llm.models import structured_output
from prefect_agentic.llm.session import ModelSession
from prefect_agentic.llm.usage import LLMUsage
from prefect_agentic.plan.loader import plan_from_data
from prefect_agentic.plan.models import Plan, PlannerInfo
from prefect_agentic.plan.revision import next_version
from prefect_agentic.plan.schema import plan_json_schema
from prefect_agentic.plan.validation import check_plan
from prefect_agentic.planners.failure import FailureContext, capped
from prefect_agentic.record.recorder import LoggingRecorder, Recorder
from prefect_agentic.tools.registry import ToolRegistry, default_registry

SYSTEM_PROMPT = """\
You are the planner of prefect-agentic. You break a software-engineering goal into a plan:
a JSON object with "id", "goal" and "steps". Each step calls one tool in a sandboxed copy of
a git repository (working directory /workspace, no network) and has success criteria that a
program checks. Rules:
- Keep steps small and verifiable; give each a short lower-case "id" and a "description".
- A step that changes files must set "writes_workspace": true, and every such step must be
  ordered against every other step with "depends_on" (steps share one workspace).
- Use "success" criteria the tool supports (exit_code, tests_failed, lint_violations,
  max_changed_lines, unchanged_paths) so that done means verified.
- Only use the tools listed below, with exactly the arguments their schema allows.
- Reply with the JSON object only. Put a one-paragraph explanation of your approach in
  "planner": {"rationale": "..."}.

Tools:
{tools}

JSON Schema of a plan:
{schema}
"""


class InvalidAnswer(Exception):
    """An answer's problems, fed back to the model."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class LLMPlanner:
    """Plans and re-plans with one LLM endpoint; ``usage`` is what that cost so far.

    Every model call is recorded to ``recorder`` (kinds ``model_call`` and
    ``budget``); whoever adopts a plan records it (the scheduler records each
    plan version a run takes on). With a ``policy``, a plan the policy forbids
    is one more problem fed back to the model. ``model`` replaces the
    endpoint's model (pydantic-ai's ``TestModel``/``FunctionModel`` in tests,
    the recorded answers in a replay).
    """

    name = "llm"
    version = "2.0.0"

    def __init__(
        self,
        endpoint: LLMEndpoint,
        *,
        registry: ToolRegistry | None = None,
        recorder: Recorder | None = None,
        max_attempts: int = 3,
        policy: ToolPolicy | None = None,
        model: Model | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.registry = registry or default_registry()
        self.policy = policy
        self.recorder = recorder or LoggingRecorder()
        self.max_attempts = max_attempts
        self.session = ModelSession(endpoint, purpose="plan", recorder=self.recorder, model=model)

    @property
    def usage(self) -> LLMUsage:
        return self.session.usage

    def plan(self, goal: str, *, plan_id: str | None = None, context: str = "") -> Plan:
        """A new plan (version 1) for ``goal``; ``context`` describes the repository if known."""
        plan_id = plan_id or slug(goal)
        request = f"Goal: {goal}\nUse the plan id {plan_id!r}."
        if context:
            request += f"\n\nAbout the repository:\n{context}"

        def accept(data: Any) -> Plan:
            plan, rationale = self._plan_of(data, plan_id, goal)
            plan = plan.model_copy(update={"version": 1, "planner": self._info(rationale)})
            return self._checked(plan)

        return self._ask(request, accept)

    def replan(self, failure: FailureContext) -> Plan:
        """The next version of ``failure.plan``: its completed steps, then a revised rest.

        Durable as a whole (see the module docstring): the answer of an
        earlier run for the same situation is taken from the cache.
        """
        if not self.endpoint.durable or self.session._given is not None:
            return self.replan_now(failure)
        tee = _Tee(self.recorder)
        self.session.recorder = tee
        try:
            state = replan_task.with_options(name="replan", task_run_name=f"replan v{failure.plan.version + 1}")(
                self, failure, tee, return_state=True)
        finally:
            self.session.recorder = self.recorder
        outcome = state.result()
        if state.name == "Cached":  # the model was not asked: record the answers the plan came from
            for data, step_id in outcome["calls"]:
                self.recorder.record("model_call", {**data, "cached": True, "cost": 0.0,
                                                    "prompt_tokens": 0, "completion_tokens": 0},
                                     step_id=step_id)
                self.session.usage = self.session.usage + LLMUsage(calls=1, cached_calls=1)
        return Plan.model_validate(outcome["plan"])

    def replan_now(self, failure: FailureContext) -> Plan:
        """``replan`` without the durable whole (each model request is still durable)."""
        current = failure.plan
        self.session.purpose = "replan"

        def accept(data: Any) -> Plan:
            proposal, rationale = self._plan_of(data, current.id, current.goal)
            revised = next_version(current, failure.completed_ids, proposal.steps, self._info(rationale))
            return self._checked(revised)

        try:
            return self._ask(replan_request(failure), accept)
        finally:
            self.session.purpose = "plan"

    def agent(self, accept: Callable[[Any], Plan]) -> tuple[Agent[None, Any], list[list[str]]]:
        """The pydantic-ai agent of one question; the list collects each rejected answer's problems."""
        model = self.session.model()
        output = structured_output(model, plan_json_schema(self.registry), "plan",
                                   "A prefect-agentic plan")
        agent: Agent[None, Any] = Agent(
            model, output_type=output, system_prompt=self._system_prompt(),
            retries={"output": self.max_attempts - 1},
            model_settings={"temperature": self.endpoint.temperature},
        )
        rejected: list[list[str]] = []

        @agent.output_validator
        def _validate(data: Any) -> Any:
            try:
                return accept(data)
            except InvalidAnswer as exc:
                rejected.append(exc.problems)
                raise ModelRetry(feedback(exc.problems)) from None

        return agent, rejected

    def _ask(self, request: str, accept: Callable[[Any], Plan]) -> Plan:
        agent, rejected = self.agent(accept)
        try:
            with self.session.errors("plan"):
                result = agent.run_sync(request)
        except LLMOutputError as exc:
            problems = rejected[-1] if rejected else exc.problems
            raise LLMOutputError(
                f"{self.endpoint.label()} gave no valid plan in {self.max_attempts} answer(s); "
                "problems of the last one", problems) from None
        return result.output

    def _plan_of(self, data: Any, plan_id: str, goal: str) -> tuple[Plan, str]:
        """The answer as a plan (structure only), and the rationale it gave."""
        rationale = ""
        if isinstance(data, dict):
            data = dict(data)
            data.update(id=plan_id, goal=goal)  # ours to choose, whatever the model wrote
            info = data.pop("planner", None)
            if isinstance(info, dict) and isinstance(info.get("rationale"), str):
                rationale = info["rationale"]
        try:
            return plan_from_data(data, source="answer"), rationale
        except PlanError as exc:
            raise InvalidAnswer(exc.problems) from None

    def _checked(self, plan: Plan) -> Plan:
        try:
            return check_plan(plan, self.registry, source="answer", policy=self.policy)
        except PlanError as exc:
            raise InvalidAnswer(exc.problems) from None

    def _info(self, rationale: str) -> PlannerInfo:
        return PlannerInfo(name=self.name, version=self.version, rationale=rationale)

    def _system_prompt(self) -> str:
        tools = "\n".join(
            f"- {tool.name} (v{tool.version}): {tool.description} Output fields: "
            f"{', '.join(tool.Output.model_fields)}."
            for tool in self.registry
        )
        name = getattr(self.endpoint, "_block_document_name", None)
        if name and "propose_patch" in self.registry:
            tools += f'\nSteps of tool propose_patch use "endpoint": "{name}".'
        schema = json.dumps(plan_json_schema(self.registry), separators=(",", ":"))
        return SYSTEM_PROMPT.replace("{tools}", tools).replace("{schema}", schema)

    def situation(self, failure: FailureContext) -> dict[str, Any]:
        """What a re-plan's answer depends on, without what differs between two runs (timings)."""
        return {
            "planner": [self.name, self.version, self.max_attempts],
            "endpoint": self.endpoint.identity(),
            "tools": sorted((t.name, t.version) for t in self.registry),
            "policy": self.policy.model_dump(mode="json") if self.policy else None,
            "plan": failure.plan.model_dump(mode="json"),
            "completed": [(r.step_id, r.snapshot) for r in failure.completed],
            "failed": [f.step.id for f in failure.failed],
            "not_run": list(failure.not_run),
            "diff": failure.diff,
            "instructions": failure.instructions,
        }


class _Tee:
    """Records to ``target`` and keeps the ``model_call`` records (a re-plan's cached result)."""

    def __init__(self, target: Recorder) -> None:
        self.target = target
        self.calls: list[tuple[dict[str, Any], str | None]] = []

    def record(self, kind: str, data: Mapping[str, Any], *, step_id: str | None = None) -> None:
        self.target.record(kind, data, step_id=step_id)
        if kind == "model_call":
            self.calls.append((dict(data), step_id))


def _replan_key(context: TaskRunContext | None, parameters: dict[str, Any]) -> str:
    planner: LLMPlanner = parameters["planner"]
    situation = planner.situation(parameters["failure"])
    digest = hashlib.sha256(json.dumps(situation, sort_keys=True, default=str).encode()).hexdigest()
    return f"agentic-replan-{digest}"


@task(persist_result=True, result_serializer="json", cache_key_fn=_replan_key)
def replan_task(planner: LLMPlanner, failure: FailureContext, tee: _Tee) -> dict[str, Any]:
    """A re-plan as a cached task: the plan, and the model calls it took (for the record)."""
    plan = planner.replan_now(failure)
    return {"plan": plan.model_dump(mode="json"), "calls": tee.calls}


def feedback(problems: list[str]) -> str:
    lines = "\n".join(f"- {p}" for p in problems)
    return f"The plan cannot be used. Problems:\n{lines}\nReply again with the complete corrected plan."


def replan_request(failure: FailureContext) -> str:
    """The user message of a re-plan: what happened, and what to write."""
    plan = failure.plan
    parts = [f"Plan {plan.id!r} v{plan.version} for the goal {plan.goal!r} did not go through."]
    if failure.completed:
        done = "\n".join(f"- {r.step_id} ({r.tool}): {plan.step(r.step_id).description or ''}".rstrip(": ")
                         for r in failure.completed)
        parts.append(f"Completed steps (kept as they are, never run again; you may depend on them):\n{done}")
    for failed in failure.failed:
        spec = json.dumps(failed.step.model_dump(mode="json", exclude_defaults=True))
        parts.append(f"Failed step {failed.step.id!r}: {spec}\nWhy it failed:\n{failed.reason}")
        if failed.output:
            parts.append(f"Output of its last attempt:\n{capped(_output_text(failed.output), 8000)}")
        if failed.attempt_diff:
            parts.append(f"What its last attempt changed:\n{failed.attempt_diff}")
    if failure.not_run:
        parts.append(f"Steps that did not run: {', '.join(failure.not_run)}")
    parts.append(f"The run's changes so far (diff from the base commit):\n{failure.diff or '(none)'}")
    if failure.instructions:
        parts.append(f"Instructions from a human reviewer:\n{failure.instructions}")
    taken = ", ".join(repr(i) for i in failure.completed_ids) or "none"
    parts.append(
        f"Write plan {plan.id!r} with only the REMAINING work to reach the goal: new steps that "
        f"fix the failure and then verify the result. Do not repeat completed steps; step ids "
        f"already taken: {taken}. A step without depends_on runs after the completed steps."
    )
    return "\n\n".join(parts)


def _output_text(output: dict[str, Any]) -> str:
    log = output.get("log")
    rest = {k: v for k, v in output.items() if k not in ("log", "stdout", "stderr", "diff")}
    text = json.dumps(rest, default=str)
    return f"{text}\n{log}" if isinstance(log, str) and log else text


def slug(text: str) -> str:
    """A plan id from free text: lower-case words joined by '-', at most 64 characters."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:64].strip("-") or "plan"
