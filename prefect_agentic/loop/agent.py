"""The agent loop as a run hook: a failed step leads to a re-plan, then to a human.

A step that failed (after its own retries) makes the hook ask for a revised
plan. Once the run is quiet, the LLM planner gets the failure context and
writes the remaining work, at most ``max_replans`` times per run. When that
is over (or impossible) and escalation is on, the flow run pauses for a
human: retry, skip, abort, or new instructions for another re-plan. Without
escalation the run stops, saying why.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prefect import get_run_logger

from prefect_agentic.chaos.llm import spoiled_answers
from prefect_agentic.errors import LLMError
from prefect_agentic.executor import RunContext, run_resources
from prefect_agentic.loop.context import failure_context
from prefect_agentic.loop.escalation import EscalationAnswer, ask_human
from prefect_agentic.loop.settings import LoopSettings
from prefect_agentic.plan.models import Plan, PlannerInfo, Step
from prefect_agentic.plan.revision import next_version, remaining, without
from prefect_agentic.planners.failure import FailedStep, FailureContext, capped
from prefect_agentic.planners.llm import LLMPlanner
from prefect_agentic.report import StepReport
from prefect_agentic.scheduler import Decision, Go, Replan, RunHook, Stop

Outcome = Plan | Stop | None


class AgentLoop(RunHook):
    """Re-plans and escalates failures of one run (see the module docstring)."""

    def __init__(self, run: RunContext, settings: LoopSettings) -> None:
        self.run = run
        self.settings = settings
        self.replans = 0
        self._planner: LLMPlanner | None = None

    def after_step(self, step: Step, report: StepReport) -> Decision | Replan:
        if report.ok:
            return Go()
        return Replan(reason=f"step '{step.id}' failed", revise=self._revise)

    def planner(self) -> LLMPlanner | None:
        if self._planner is None and self.settings.llm is not None:
            self._planner = LLMPlanner(self.settings.llm, recorder=run_resources(self.run).recorder,
                                       max_attempts=self.settings.planner_attempts,
                                       policy=self.run.policy)
        return self._planner

    def _revise(self, plan: Plan, reports: dict[str, StepReport]) -> Outcome:
        resources = run_resources(self.run)
        failure = failure_context(plan, reports, resources.workspace, self.run.base_snapshot, resources.redactor)
        failed = _names(failure)
        planner = self.planner()
        if planner is None:
            problem = f"step(s) {failed} failed and no LLM endpoint is set for re-planning"
        elif self.replans >= self.settings.max_replans:
            problem = f"step(s) {failed} still failed after {self.replans} re-plan(s), the limit"
        else:
            self.replans += 1
            get_run_logger().info("Re-planning (%d of %d): step(s) %s failed", self.replans,
                                  self.settings.max_replans, failed)
            try:
                return self._replan(planner, failure)
            except LLMError as exc:
                problem = f"re-planning after step(s) {failed} failed did not work: {exc}"
        if self.settings.escalate:
            return self._escalate(failure, problem)
        return Stop(problem)

    def replan_for_changes(self, plan: Plan, reports: dict[str, StepReport], step: Step,
                           instructions: str, diff: str) -> Plan | Stop:
        """A new version after an approver asked for changes to ``step`` (before it ran).

        The planner sees the step as one that did not go through, the run's
        ``diff`` before it, and the approver's words as instructions; like an
        escalation's instructions, this does not count against ``max_replans``
        but is charged to the budget.
        """
        planner = self.planner()
        if planner is None:
            return Stop(f"changes to step '{step.id}' were requested and no LLM endpoint is set")
        resources = run_resources(self.run)
        context = failure_context(plan, reports, resources.workspace, self.run.base_snapshot, resources.redactor)
        blocked = FailedStep(step=step, reason="not run: a human reviewer requested changes before it ran")
        failure = context.model_copy(update={"failed": [blocked], "instructions": instructions,
                                             "diff": capped(diff)})
        try:
            return self._replan(planner, failure)
        except LLMError as exc:
            return Stop(f"re-planning the changes requested to step '{step.id}' did not work: {exc}")

    def _replan(self, planner: LLMPlanner, failure: FailureContext) -> Plan:
        """A re-plan whose cost (even a failed one's) is charged to the run's budget."""
        spent = planner.usage.cost
        try:
            with spoiled_answers(self.run.chaos, run_resources(self.run).recorder):
                return planner.replan(failure)
        finally:
            run_resources(self.run).meter.add("cost", planner.usage.cost - spent)

    def _escalate(self, failure: FailureContext, problem: str) -> Outcome:
        """Ask until the answer is one the run can act on."""
        while True:
            asked = time.monotonic()
            answer = ask_human(failure, problem, timeout=self.settings.escalation_timeout_seconds,
                               poll=self.settings.escalation_poll_seconds)
            run_resources(self.run).recorder.record("approval", {
                "gate": "escalation", "question": problem, "failed": [f.step.id for f in failure.failed],
                "answer": answer.model_dump(include={"action", "instructions"}) if answer else None,
                "wait_seconds": round(time.monotonic() - asked, 3),
            })
            if answer is None:
                return Stop(f"{problem}; nobody answered the escalation within "
                            f"{self.settings.escalation_timeout_seconds}s")
            outcome = self._act(failure, answer)
            if isinstance(outcome, str):
                problem = outcome  # ask again, saying why the answer could not be used
            else:
                return outcome

    def _act(self, failure: FailureContext, answer: EscalationAnswer) -> Outcome | str:
        plan, failed = failure.plan, [f.step.id for f in failure.failed]
        rest = remaining(plan, failure.completed_ids)
        if answer.action == "abort":
            return Stop(f"aborted by a human after step(s) {_names(failure)} failed")
        if answer.action == "retry":
            return self._human_version(failure, rest, "retry")
        if answer.action == "skip":
            for step_id in failed:
                rest = without(rest, step_id)
            return self._human_version(failure, rest, "skip")
        planner = self.planner()
        if not answer.instructions.strip():
            return "the answer 'instruct' came without instructions; answer again"
        if planner is None:
            return "new instructions need an LLM endpoint (loop.llm); answer retry, skip or abort"
        try:
            return self._replan(planner, failure.model_copy(update={"instructions": answer.instructions}))
        except LLMError as exc:
            return f"re-planning with the instructions did not work: {exc}"

    def _human_version(self, failure: FailureContext, steps: Sequence[Step], action: str) -> Outcome:
        if not steps and not failure.completed:
            return Stop(f"a human chose '{action}' and nothing is left to run")
        info = PlannerInfo(name="human", version="escalation",
                           rationale=f"{action} after step(s) {_names(failure)} failed")
        return next_version(failure.plan, failure.completed_ids, steps, info)


def _names(failure: FailureContext) -> str:
    return ", ".join(f"'{f.step.id}'" for f in failure.failed)
