"""The ``coverage`` tool: the test suite under coverage.py, here and at the run's base snapshot.

Its output is the pytest counts plus the line coverage of the measured
sources, and (with ``compare_base``) the coverage of the same sources at a base
commit (by default the one the run started from), so the ``min_coverage_gain`` criterion can
require that a run raised coverage while ``tests_failed`` keeps the suite
green. ``measure`` is shared with the ``ghostwrite`` tool, which needs the
executed lines of single test files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from git import GitCommandError
from pydantic import Field

from prefect_agentic.errors import ToolError, ToolOutputError
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput, command_line
from prefect_agentic.tools.base_snapshot import BASE_CHECKOUT_FAILED_EXIT, at_base, resolve_against
from prefect_agentic.tools.pytest import CRASH_EXIT_CODES, PytestOutput, parse_junit_xml
from prefect_agentic.workspace import run_git

HYPOTHESIS_HOME = "HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis"
"""Hypothesis keeps its caches in the container's /tmp, never in the worktree."""
_NO_TESTS = 5


class CoverageInput(ToolInput):
    paths: list[str] = Field(default_factory=list, description="Test paths; empty = pytest's default.")
    source: list[str] = Field(
        min_length=1, description="Packages or directories whose line coverage is measured."
    )
    omit: list[str] = Field(default_factory=list, description="File globs left out of the measure.")
    compare_base: bool = Field(
        default=True, description="Also measure the base (`against`) and report the gain."
    )
    against: str = Field(
        default="@base",
        description="The base: '@base' is the run's starting commit; or a branch, tag or commit.",
    )


class CoverageOutput(PytestOutput):
    coverage_percent: float = Field(ge=0, le=100)
    covered_lines: int = Field(ge=0)
    statements: int = Field(ge=0)
    base_coverage_percent: float | None = None
    coverage_gain: float | None = Field(
        default=None, description="Percentage points gained over the base snapshot."
    )
    headline: str = ""


@dataclass
class Measurement:
    """One suite run under coverage: pytest counts and what it executed."""

    counts: dict[str, Any]
    percent: float = 0.0
    covered: int = 0
    statements: int = 0
    executed: dict[str, set[int]] = field(default_factory=dict)


class CoverageTool(Tool):
    """Run the suite under coverage; failing tests and low coverage are results, crashes errors."""

    name: ClassVar[str] = "coverage"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Run the tests under coverage.py; report coverage and its gain over the base."
    Input: ClassVar[type[ToolInput]] = CoverageInput
    Output: ClassVar[type[ToolOutput]] = CoverageOutput

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "test"

    def run(self, args: CoverageInput, ctx: ToolContext) -> Mapping[str, Any]:
        now = measure(ctx, args.paths, args.source, args.omit, tag="worktree")
        output: dict[str, Any] = {**now.counts, "coverage_percent": now.percent,
                                  "covered_lines": now.covered, "statements": now.statements}
        headline = f"{now.counts['passed']} passed, {now.counts['failed']} failed, coverage {now.percent:.1f}%"
        if args.compare_base:
            against = resolve_against(ctx.workspace, ctx.base_snapshot, args.against)
            present = paths_at(ctx, against, args.paths)
            before = (measure(ctx, present, args.source, args.omit, tag="base", base=against)
                      if present or not args.paths else Measurement(counts={}))
            gain = round(now.percent - before.percent, 2)
            output.update(base_coverage_percent=before.percent, coverage_gain=gain)
            headline += f" (base {before.percent:.1f}%, {gain:+.1f})"
        return {**output, "headline": headline}


def measure(ctx: ToolContext, tests: Sequence[str], source: Sequence[str], omit: Sequence[str] = (),
            *, tag: str, base: str | None = None) -> Measurement:
    """Run ``tests`` under coverage of ``source`` in the worktree (or a copy of commit ``base``)."""
    reports = ctx.report_dir_in_sandbox
    env = f"{HYPOTHESIS_HOME} COVERAGE_FILE={reports}/{tag}.coverage"
    omitted = [f"--omit={','.join(omit)}"] if omit else []
    run = ["python3", "-m", "coverage", "run", f"--source={','.join(source)}", *omitted,
           "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "junit_family=xunit1",
           f"--junitxml={reports}/{tag}-junit.xml", *tests]
    report = ["python3", "-m", "coverage", "json", "-q", "-o", f"{reports}/{tag}-coverage.json"]
    script = f"{env} {command_line(run)}; rc=$?; {env} {command_line(report)} >/dev/null 2>&1; exit $rc"
    for name in (f"{tag}-junit.xml", f"{tag}-coverage.json"):
        ctx.reports.unlink(name)
    result = ctx.run(at_base(script, base) if base else ["sh", "-c", script])
    where = f"at base {base[:12]}" if base else "in the worktree"
    log = result.combined_tail()
    if base and result.exit_code == BASE_CHECKOUT_FAILED_EXIT:
        raise ToolError(f"could not copy the base snapshot to measure its coverage:\n{log}")
    if result.exit_code in CRASH_EXIT_CODES:
        raise ToolError(f"pytest under coverage {where} stopped ({CRASH_EXIT_CODES[result.exit_code]}, "
                        f"exit code {result.exit_code}):\n{log}")
    junit = ctx.reports.read_optional(f"{tag}-junit.xml")
    if result.exit_code not in (0, 1, _NO_TESTS) or junit is None:
        raise ToolError(f"pytest under coverage {where} exited {result.exit_code} without a report:\n{log}")
    found = Measurement(counts={**parse_junit_xml(junit, f"{tag}-junit.xml"), "exit_code": result.exit_code,
                                "log": log})
    data = ctx.reports.read_optional(f"{tag}-coverage.json")
    if data is not None:
        _read_coverage_json(data, found, f"{tag}-coverage.json")
    elif result.exit_code != _NO_TESTS:
        raise ToolError(f"coverage wrote no report {where} (did the tests import {list(source)}?):\n{log}")
    return found


def _read_coverage_json(text: bytes, into: Measurement, name: str) -> None:
    try:
        data = json.loads(text)
        totals = data["totals"]
        into.percent = round(float(totals["percent_covered"]), 2)
        into.covered = int(totals["covered_lines"])
        into.statements = int(totals["num_statements"])
        into.executed = {path: set(info["executed_lines"]) for path, info in data["files"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ToolOutputError(f"coverage report {name} is not coverage's JSON format: {exc}") from None


def paths_at(ctx: ToolContext, commit: str, paths: Sequence[str]) -> list[str]:
    """Those of ``paths`` that exist at ``commit`` (tests a run added are not in its base)."""
    present = []
    for path in paths:
        if path.strip("/") in ("", "."):
            present.append(path)
            continue
        try:
            run_git(ctx.workspace, "cat-file", "-e", f"{commit}:{path.rstrip('/')}")
        except GitCommandError:
            continue
        present.append(path)
    return present
