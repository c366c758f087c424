"""Declarative success criteria of a step.

Outcome criteria (``exit_code``, ``tests_failed``, ``lint_violations``,
``new_findings``, ``min_coverage_gain``) read fields of the tool's output; an unmet outcome is worth another attempt. Guard
criteria (``max_changed_lines``, ``unchanged_paths``) read the step's change
to the workspace; breaking a guard fails the step at once.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

OUTCOME_FIELDS: tuple[str, ...] = ("exit_code", "tests_failed", "lint_violations", "new_findings",
                                   "min_coverage_gain")
"""Criteria that compare a field of the tool's output; the tool must have that field."""

OUTPUT_FIELD: dict[str, str] = {"min_coverage_gain": "coverage_gain"}
"""Outcome criteria that read an output field of another name."""


def output_field(criterion: str) -> str:
    """The output field an outcome criterion reads."""
    return OUTPUT_FIELD.get(criterion, criterion)


class SuccessCriteria(BaseModel):
    """What a step's result must satisfy to count as done."""

    model_config = ConfigDict(extra="forbid")

    exit_code: int | None = Field(
        default=None, description="The tool's command must exit with exactly this code."
    )
    tests_failed: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="At most this many failed or erroring tests (pytest). 0 means none.",
    )
    lint_violations: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="At most this many remaining lint violations (ruff)."
    )
    new_findings: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="At most this many findings the base snapshot does not have (scanners: bandit).",
    )
    min_coverage_gain: Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="Line coverage must rise by at least this many percentage points over the base "
        "snapshot (coverage with compare_base).",
    )
    max_changed_lines: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="At most this many lines added plus deleted by the step in the workspace.",
    )
    unchanged_paths: list[str] = Field(
        default_factory=list,
        description=(
            "Glob patterns (fnmatch; '*' also matches '/') of files the step must not change; "
            "a pattern ending in '/' protects a whole directory."
        ),
    )

    def set_fields(self) -> dict[str, object]:
        """Only the criteria the plan author actually set."""
        return self.model_dump(exclude_unset=True, exclude_defaults=True)

    def merged_over(self, defaults: dict[str, object]) -> SuccessCriteria:
        """These criteria on top of a tool's defaults (the step's own settings win)."""
        return SuccessCriteria.model_validate({**defaults, **self.set_fields()})
