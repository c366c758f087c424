"""Escalation: the flow run pauses and a human decides how a failed run goes on.

The answer comes through Prefect's run input (the UI's resume form, or
``resume_flow_run(flow_run_id, run_input={...})``): retry the failed steps,
skip them, abort the run, or give new instructions for a re-plan. Waiting
costs nothing: the flow run is Paused and nothing runs under it.
"""

from __future__ import annotations

from typing import Literal

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from prefect_agentic.planners.failure import FailureContext

Action = Literal["retry", "skip", "abort", "instruct"]


class EscalationAnswer(RunInput):
    """A human's decision about a failed run."""

    action: Action = Field(description="retry the failed steps, skip them, abort, or instruct a re-plan.")
    instructions: str = Field(default="", description="For 'instruct': what the re-plan should do.")


def ask_human(failure: FailureContext, problem: str, *, timeout: int, poll: int) -> EscalationAnswer | None:
    """Pause the flow run until a human answers; None if nobody answered in ``timeout`` seconds."""
    logger = get_run_logger()
    question = describe(failure, problem)
    logger.warning("Escalating: %s Resume the flow run with run_input "
                   "{'action': 'retry'|'skip'|'abort'|'instruct', 'instructions': '...'}.", problem)
    try:
        return pause_flow_run(
            wait_for_input=EscalationAnswer.with_initial_data(description=question, action="retry"),
            timeout=timeout, poll_interval=poll,
        )
    except FlowPauseTimeout:
        return None


def describe(failure: FailureContext, problem: str) -> str:
    """The question shown on the resume form (Markdown)."""
    lines = [f"## Plan `{failure.plan.id}` v{failure.plan.version} needs a decision", "", problem, ""]
    for failed in failure.failed:
        lines += [f"**Step `{failed.step.id}` ({failed.step.tool}) failed:**", "```",
                  failed.reason[-2000:], "```"]
    done = ", ".join(f"`{i}`" for i in failure.completed_ids) or "none"
    lines += [f"Completed (kept): {done}", "",
              ("Answer **retry** (run the failed steps again), **skip** (go on without them), "
              "**abort** (stop the run), or **instruct** with instructions for a re-plan.")]
    return "\n".join(lines)
