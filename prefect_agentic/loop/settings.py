"""How a run reacts to a failed step: re-plan with an LLM, ask a human, both, or neither."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint


class LoopSettings(BaseModel):
    """The ``loop`` parameter of the run-plan flow.

    With ``llm``, a failed step (after its own retries) leads to a re-plan,
    at most ``max_replans`` times per run. With ``escalate``, a failure that
    re-planning cannot take further pauses the flow run until a human answers
    retry, skip, abort or new instructions.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    llm: LLMEndpoint | None = Field(default=None, description="Endpoint of the re-planning LLM.")
    max_replans: int = Field(default=2, ge=0, le=20, description="Re-plans per run at most.")
    planner_attempts: int = Field(
        default=3, ge=1, le=10, description="Answers the planner may give per re-plan."
    )
    escalate: bool = Field(default=False, description="Ask a human when re-planning is over.")
    escalation_timeout_seconds: int = Field(
        default=3600, gt=0, description="How long to wait for the human; then the run stops."
    )
    escalation_poll_seconds: int = Field(
        default=10, gt=0, description="How often the paused flow run checks for an answer."
    )
