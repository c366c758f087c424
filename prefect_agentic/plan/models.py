"""Pydantic models of a plan file.

Field names are the plan file format users write; keep them stable. The models
check structure only; ``validation.check_plan`` checks meaning (tools, graph).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prefect_agentic.plan.criteria import SuccessCriteria

PLAN_SCHEMA_VERSION = 1
"""The plan format this pack writes and the newest it reads. A plan file without
``schema_version`` (written before the field existed) is version 1. Raise it, and
keep reading every older version, when the format changes incompatibly."""

Identifier = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
        description="Lower-case letters, digits, '_', '-', '.'; at most 64 characters.",
    ),
]


class PlannerInfo(BaseModel):
    """Which planner produced a plan, and why (absent for hand-written plans)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    rationale: str = ""


class Step(BaseModel):
    """One small verifiable unit of work: a tool call with success criteria."""

    model_config = ConfigDict(extra="forbid")

    id: Identifier
    tool: str = Field(description="Name of a registered tool (see `agentic tools`).")
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments for the tool.")
    description: str | None = None
    depends_on: list[str] = Field(
        default_factory=list, description="Ids of steps that must complete first."
    )
    success: SuccessCriteria = Field(default_factory=SuccessCriteria)
    retries: Annotated[int, Field(ge=0, le=20)] = 0
    retry_backoff_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=1.0,
        description="Delay before the first retry; doubles for each further retry.",
    )
    retry_jitter: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5, description="Random extra delay, as a fraction of each backoff delay."
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=86400)] | None = Field(
        default=None,
        description="Kill the step's command after this long; defaults to the sandbox setting.",
    )
    writes_workspace: bool = Field(
        default=False,
        description=(
            "The step changes files; its result is committed as a new snapshot. "
            "Such a step never runs at the same time as another step."
        ),
    )
    requires_approval: bool = Field(
        default=False, description="Pause for a human decision before the step runs."
    )
    network: str | None = Field(
        default=None,
        description="Docker network the step's commands join (the tool policy must allow it); none by default.",
    )
    secrets: list[str] = Field(
        default_factory=list,
        description="Secrets (Prefect Secret block names) the step receives as environment variables, "
        "if the tool policy grants them.",
    )


class Plan(BaseModel):
    """A goal broken into a DAG of steps."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Annotated[int, Field(ge=1)] = Field(
        default=PLAN_SCHEMA_VERSION,
        description="Version of the plan file format (not of the plan): 1 when absent. A pack refuses "
        "a plan written in a newer format than it reads.",
    )
    id: Identifier
    version: Annotated[int, Field(ge=1)] = 1
    goal: Annotated[str, Field(min_length=1)]
    planner: PlannerInfo | None = None
    steps: Annotated[list[Step], Field(min_length=1)]

    @field_validator("schema_version")
    @classmethod
    def _readable(cls, value: int) -> int:
        if value > PLAN_SCHEMA_VERSION:
            raise ValueError(future_plan_schema(value))
        return value

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


def future_plan_schema(found: object) -> str:
    """Why a plan in a newer format is refused (the plan's place is added by the caller)."""
    from prefect_agentic.pins import pack_version  # the installed pack's version, for the message

    return (f"plan schema version {found} is newer than this pack reads (prefect-agentic "
            f"{pack_version()} reads plan schema versions 1 to {PLAN_SCHEMA_VERSION}); "
            "upgrade prefect-agentic where this plan is read")
