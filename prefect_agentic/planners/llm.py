"""The LLM planner: a plan, or a revised plan after a failure, from a language model.

The model is asked for JSON constrained by the plan's JSON Schema; what it
answers is validated like any plan file (structure with pydantic, meaning
with ``check_plan``), and every problem goes back to it for another try, a
bounded number of times. A re-plan keeps the completed steps as they are:
the model only writes the remaining work, and the check runs on the merged
next version, so an answer that re-uses a completed step's id or leaves a
writing step unordered is fed back like any other problem.
"""

from __future__ import annotations

import json
import re
from typing import Any

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanError
from prefect_agentic.llm.client import LLMClient, Message
from prefect_agentic.llm.structured import InvalidAnswer, ask_for_json
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


class LLMPlanner:
    """Plans and re-plans with one LLM endpoint; ``usage`` is what that cost so far.

    Every model call is charged to ``recorder`` (kind ``budget``); whoever
    adopts a plan records it (the scheduler records each plan version a run
    takes on). With a ``policy``, a plan the policy forbids is one more
    problem fed back to the model.
    """

    name = "llm"
    version = "1.0.0"

    def __init__(
        self,
        endpoint: LLMEndpoint,
        *,
        registry: ToolRegistry | None = None,
        recorder: Recorder | None = None,
        max_attempts: int = 3,
        policy: ToolPolicy | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.registry = registry or default_registry()
        self.policy = policy
        self.recorder = recorder or LoggingRecorder()
        self.client = LLMClient(endpoint, purpose="plan", recorder=self.recorder)
        self.max_attempts = max_attempts

    @property
    def usage(self) -> LLMUsage:
        return self.client.usage

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
        """The next version of ``failure.plan``: its completed steps, then a revised rest."""
        current = failure.plan

        def accept(data: Any) -> Plan:
            proposal, rationale = self._plan_of(data, current.id, current.goal)
            revised = next_version(current, failure.completed_ids, proposal.steps, self._info(rationale))
            return self._checked(revised)

        return self._ask(replan_request(failure), accept)

    def _ask(self, request: str, accept: Any) -> Plan:
        messages: list[Message] = [
            {"role": "system", "content": self._system_prompt()},
            {"role": "user", "content": request},
        ]
        schema = plan_json_schema(self.registry)
        return ask_for_json(self.client, messages, schema=schema, schema_name="plan",
                            accept=accept, attempts=self.max_attempts, what="plan")

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
