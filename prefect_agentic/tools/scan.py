"""The contract of security scanners: structured findings and what is new since the base.

A scanner tool takes ``ScanInput`` and returns ``ScanOutput``: every finding
at or above the thresholds, and the ones that are new compared with the run's
base snapshot. The ``new_findings`` success criterion gates on that count, so
a scan can fail a run for what the run introduced, not for what was already
there. ``bandit`` is the built-in scanner; another one follows the same
contract (see the ``security-scan`` recipe's ``scanners`` parameter).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prefect_agentic.tools.base import ToolInput, ToolOutput

Level = Literal["low", "medium", "high"]
LEVELS: tuple[Level, ...] = ("low", "medium", "high")


class Finding(BaseModel):
    """One problem a scanner reported, at a place in the code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scanner: str
    rule: str = Field(description="The scanner's rule id (bandit: B602).")
    title: str = Field(default="", description="The rule's name.")
    severity: Level
    confidence: Level
    path: str = Field(description="Workspace-relative file.")
    line: int = Field(ge=0)
    message: str

    def identity(self) -> tuple[str, str, str, str]:
        """What makes two findings the same across commits (line numbers move)."""
        return self.scanner, self.rule, self.path, self.message


class ScanInput(ToolInput):
    paths: list[str] = Field(default_factory=lambda: ["."], min_length=1, description="What to scan.")
    exclude: list[str] = Field(default_factory=list, description="Paths (globs) to leave out.")
    severity: Level = Field(default="low", description="Report findings of at least this severity.")
    confidence: Level = Field(default="low", description="Report findings of at least this confidence.")
    compare_base: bool = Field(
        default=True, description="Also scan the base (`against`) and report what is new."
    )
    against: str = Field(
        default="@base",
        description="The base: '@base' is the run's starting commit; or a branch, tag or commit.",
    )


class ScanOutput(ToolOutput):
    findings: list[Finding] = Field(default_factory=list, description="At or above the thresholds.")
    by_severity: dict[str, int] = Field(default_factory=dict)
    base_findings: int | None = Field(default=None, description="Findings in the base snapshot.")
    new_findings: int = Field(ge=0, description="Findings the base snapshot does not have.")
    new: list[Finding] = Field(default_factory=list)
    headline: str = ""


def at_least(level: Level, threshold: Level) -> bool:
    return LEVELS.index(level) >= LEVELS.index(threshold)


def new_since(current: Iterable[Finding], base: Iterable[Finding]) -> list[Finding]:
    """Findings of ``current`` that ``base`` lacks, matched by identity (not line).

    When a file has more findings of one identity than the base had, the last
    ones by line count as new.
    """
    remaining = Counter(f.identity() for f in base)
    fresh = []
    for finding in sorted(current, key=lambda f: (f.path, f.line, f.rule)):
        if remaining[finding.identity()] > 0:
            remaining[finding.identity()] -= 1
        else:
            fresh.append(finding)
    return fresh


def scan_output(findings: list[Finding], base: list[Finding] | None) -> dict[str, object]:
    """The raw ``ScanOutput`` fields for ``findings`` (already thresholded) against ``base``;
    the log lists the findings, new ones first, so a failed gate shows what it was about."""
    fresh = new_since(findings, base) if base is not None else findings
    old = [f for f in findings if f not in fresh]
    log = "\n".join(f"{'new' if f in fresh else 'old'}: {f.severity} {f.rule} {f.path}:{f.line} {f.message}"
                    for f in [*fresh, *old])
    counts = Counter(f.severity for f in findings)
    by_severity = {level: counts[level] for level in reversed(LEVELS) if counts[level]}
    summary = ", ".join(f"{n} {level}" for level, n in by_severity.items()) or "none"
    against = f", {len(fresh)} new since the base" if base is not None else ""
    return {"exit_code": 0, "log": log, "findings": findings, "by_severity": by_severity,
            "base_findings": None if base is None else len(base), "new_findings": len(fresh),
            "new": fresh, "headline": f"{len(findings)} findings ({summary}){against}"}
