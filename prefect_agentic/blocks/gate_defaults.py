"""How approval gates wait: the gate defaults block."""

from __future__ import annotations

import fnmatch
from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from prefect_agentic.blocks.branding import documentation_url, logo_url
from prefect_agentic.blocks.registration import RegisteredBySlug

GateMode = Literal["auto", "pause", "suspend"]


class GateDefaults(RegisteredBySlug, Block):
    """Timeouts, polling and waiting mode of a run's approval gates.

    No answer within the timeout counts as a rejection: the run stops cleanly
    before the step, keeps its work, and asks again when it is run again.
    ``pause`` keeps the flow run's process waiting (polling the API every
    ``poll_interval_seconds``, which bounds how soon it sees the answer);
    ``suspend`` ends the process and lets the deployment's worker start the
    flow run again after the answer, which then runs from the top on cached
    steps. ``auto`` suspends flow runs of deployments and pauses the others.
    """

    _block_type_name = "Agentic Gate Defaults"
    _block_type_slug = "agentic-gate-defaults"
    _logo_url = logo_url("agentic-gate-defaults")  # type: ignore[assignment]
    _documentation_url = documentation_url("agentic-gate-defaults")  # type: ignore[assignment]
    _description = "Timeouts, poll interval and pause/suspend mode of prefect-agentic approval gates."

    timeout_seconds: int = Field(default=3600, gt=0, description="Wait this long for an answer; then reject.")
    step_timeouts: dict[str, int] = Field(
        default_factory=dict,
        description="Timeouts of particular gates: step id glob -> seconds (first match wins).",
    )
    poll_interval_seconds: float = Field(
        default=0.5, gt=0, le=60, description="How often a paused flow run looks for the answer."
    )
    mode: GateMode = Field(default="auto", description="pause, suspend, or auto (suspend deployed runs).")
    diff_lines: int = Field(default=60, ge=0, description="Lines of the run's diff shown on the form.")

    def timeout_for(self, step_id: str) -> int:
        for pattern, seconds in self.step_timeouts.items():
            if fnmatch.fnmatchcase(step_id, pattern):
                return seconds
        return self.timeout_seconds
