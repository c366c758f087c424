"""How much a run may spend: the budget block."""

from __future__ import annotations

from typing import Annotated

from prefect.blocks.core import Block
from pydantic import Field

from prefect_agentic.blocks.branding import documentation_url, logo_url
from prefect_agentic.blocks.registration import RegisteredBySlug

Limit = Annotated[float, Field(gt=0)] | None


class Budget(RegisteredBySlug, Block):
    """Hard limits of one plan run, with a warning when a share of any limit is used.

    A run that reaches a hard limit stops cleanly: the step that hit it fails
    with the limit's name, steps not started are not run, and everything done
    so far (snapshots, cached steps) is kept, so running again with a larger
    budget resumes it. Unset limits are unlimited.
    """

    _block_type_name = "Agentic Budget"
    _block_type_slug = "agentic-budget"
    _logo_url = logo_url("agentic-budget")  # type: ignore[assignment]
    _documentation_url = documentation_url("agentic-budget")  # type: ignore[assignment]
    _description = (
        "Limits of a prefect-agentic run: steps, tool calls, retries, wall-clock seconds, "
        "container CPU-seconds and cost, with a warning at a fraction of each."
    )

    max_steps: Limit = Field(default=None, description="Steps executed (cache hits are free).")
    max_tool_calls: Limit = Field(default=None, description="Tool calls, all steps and attempts together.")
    max_retries: Limit = Field(default=None, description="Retry attempts, all steps together.")
    max_wall_clock_seconds: Limit = Field(default=None, description="Seconds since the run started.")
    max_cpu_seconds: Limit = Field(default=None, description="CPU-seconds used by sandbox containers.")
    max_cost: Limit = Field(default=None, description="Money spent on LLM tokens (in the price unit of the LLM endpoint).")
    warn_at: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.8, description="Warn (event and log line) once a limit is this much used."
    )

    def limits(self) -> dict[str, float]:
        """The set limits by meter name (``steps``, ``tool_calls``, ...)."""
        named = {"steps": self.max_steps, "tool_calls": self.max_tool_calls,
                 "retries": self.max_retries, "wall_clock_seconds": self.max_wall_clock_seconds,
                 "cpu_seconds": self.max_cpu_seconds, "cost": self.max_cost}
        return {name: value for name, value in named.items() if value is not None}
