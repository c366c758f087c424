"""What a planner is told when a run needs a revised plan.

The failed step, why it failed (the evaluator's reasons and the tool's
output, for a test step the test output), what the failed attempt changed,
what the run had changed before it, and which steps completed (they are kept
as they are and may be depended on). A human's new instructions come along
when an escalation asked for them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from prefect_agentic.plan.models import Plan, Step
from prefect_agentic.report import StepReport

MAX_DIFF_CHARS = 20_000


class FailedStep(BaseModel):
    step: Step
    reason: str
    output: dict[str, Any] | None = None
    attempt_diff: str = Field(default="", description="What the failed attempt changed (capped).")


class FailureContext(BaseModel):
    plan: Plan
    failed: list[FailedStep]
    completed: list[StepReport]
    not_run: list[str] = Field(default_factory=list)
    diff: str = Field(default="", description="The run's changes before the failed step (capped).")
    instructions: str = ""

    @property
    def completed_ids(self) -> list[str]:
        return [r.step_id for r in self.completed]


def capped(text: str, limit: int = MAX_DIFF_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit} more characters left out]\n"
