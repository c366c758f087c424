"""Turns a step's tool output and workspace change into a verdict.

Deterministic and side-effect free: the same output and change always give the
same verdict, which is what lets a recorded run be replayed.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field

from prefect_agentic.plan.criteria import SuccessCriteria
from prefect_agentic.tools.base import ToolOutput
from prefect_agentic.workspace import ChangeSummary


class VerdictKind(str, Enum):
    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"


class Verdict(BaseModel):
    """The evaluator's decision, with every unmet criterion and why."""

    kind: VerdictKind
    reasons: list[str] = Field(default_factory=list)
    criteria: list[str] = Field(default_factory=list, description="The criteria that decided.")

    @property
    def ok(self) -> bool:
        return self.kind is VerdictKind.OK

    def summary(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "all criteria met"


def evaluate(criteria: SuccessCriteria, output: ToolOutput, change: ChangeSummary) -> Verdict:
    """Judge ``output`` and ``change`` against ``criteria``.

    Unmet outcomes (exit code, failed tests, lint violations, new findings, a
    coverage gain short of the minimum) give ``retry``;
    a broken guard (too many changed lines, a protected path changed) gives
    ``fail``, which wins over ``retry``: another attempt of the same step is
    not the answer to a step that touched what it must not.
    """
    retry: list[tuple[str, str]] = []
    fail: list[tuple[str, str]] = []
    if criteria.exit_code is not None and output.exit_code != criteria.exit_code:
        retry.append(("exit_code", f"exit code {output.exit_code}, expected {criteria.exit_code}"))
    for name in ("tests_failed", "lint_violations", "new_findings"):
        limit = getattr(criteria, name)
        actual = getattr(output, name, None)
        if limit is None:
            continue
        if actual is None:
            fail.append((name, f"the tool reported no {name} for this call"))
        elif actual > limit:
            retry.append((name, f"{name.replace('_', ' ')}: {actual}, allowed at most {limit}"))
    if criteria.min_coverage_gain is not None:
        gain = getattr(output, "coverage_gain", None)
        if gain is None:
            fail.append(("min_coverage_gain", "the tool reported no coverage_gain for this call"))
        elif gain < criteria.min_coverage_gain:
            retry.append(("min_coverage_gain",
                          f"coverage gain: {gain:+g} points, required at least +{criteria.min_coverage_gain:g}"))
    if criteria.max_changed_lines is not None and change.lines_changed > criteria.max_changed_lines:
        fail.append(
            ("max_changed_lines",
             f"changed {change.lines_changed} lines, allowed at most {criteria.max_changed_lines}")
        )
    for pattern in criteria.unchanged_paths:
        touched = change.touches(pattern)
        if touched:
            fail.append(("unchanged_paths", f"changed protected path(s) {touched} (rule '{pattern}')"))
    if fail:
        return Verdict(kind=VerdictKind.FAIL, reasons=[r for _, r in fail + retry],
                       criteria=[c for c, _ in fail])
    if retry:
        return Verdict(kind=VerdictKind.RETRY, reasons=[r for _, r in retry],
                       criteria=[c for c, _ in retry])
    return Verdict(kind=VerdictKind.OK)
