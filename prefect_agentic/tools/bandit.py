"""The ``bandit`` tool: Python security findings as structured output."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from prefect_agentic.errors import ToolError, ToolOutputError
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput, command_line
from prefect_agentic.tools.base_snapshot import BASE_CHECKOUT_FAILED_EXIT, at_base, resolve_against
from prefect_agentic.tools.scan import Finding, ScanInput, ScanOutput, at_least, scan_output
from prefect_agentic.workspace import AGENTIC_DIR


class BanditTool(Tool):
    """Run bandit on the worktree (and the base snapshot); a finding is a result, not an error."""

    name: ClassVar[str] = "bandit"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Scan Python code for security problems with bandit."
    Input: ClassVar[type[ToolInput]] = ScanInput
    Output: ClassVar[type[ToolOutput]] = ScanOutput

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "scan"

    def run(self, args: ScanInput, ctx: ToolContext) -> Mapping[str, Any]:
        current = self._scan(args, ctx, "bandit.json")
        base = None
        if args.compare_base:
            against = resolve_against(ctx.workspace, ctx.base_snapshot, args.against)
            base = self._scan(args, ctx, "bandit-base.json", base=against)
        return scan_output(current, base)

    def _scan(self, args: ScanInput, ctx: ToolContext, report_name: str, *,
              base: str | None = None) -> list[Finding]:
        """Findings in the worktree, or with ``base`` in a copy of that commit."""
        ctx.reports.unlink(report_name)
        excluded = ",".join([f"./{AGENTIC_DIR}", *args.exclude])
        command = ["bandit", "--quiet", "--recursive", "--format", "json", "--exclude", excluded,
                   "--output", f"{ctx.report_dir_in_sandbox}/{report_name}", *args.paths]
        result = ctx.run(at_base(command_line(command), base) if base else command)
        where = f"base {base[:12]}" if base else "the worktree"
        if base and result.exit_code == BASE_CHECKOUT_FAILED_EXIT:
            raise ToolError(f"could not copy the base snapshot for bandit:\n{result.combined_tail()}")
        report = ctx.reports.read_optional(report_name)
        if result.exit_code not in (0, 1) or report is None:
            raise ToolError(f"bandit failed on {where} (exit code {result.exit_code}):\n"
                            f"{result.combined_tail()}")
        return [f for f in parse_bandit_report(report, report_name)
                if at_least(f.severity, args.severity) and at_least(f.confidence, args.confidence)]


def parse_bandit_report(report: bytes, name: str = "bandit.json") -> list[Finding]:
    """Findings of a bandit JSON report (its bytes, read through the workspace boundary);
    a file bandit could not parse is an error, not a pass."""
    try:
        data = json.loads(report)
        if data.get("errors"):
            problems = "; ".join(f"{e.get('filename')}: {e.get('reason')}" for e in data["errors"])
            raise ToolError(f"bandit could not scan every file: {problems}")
        return [Finding(scanner="bandit", rule=r["test_id"], title=r.get("test_name", ""),
                        severity=r["issue_severity"].lower(), confidence=r["issue_confidence"].lower(),
                        path=os.path.normpath(r["filename"]), line=r.get("line_number") or 0,
                        message=r["issue_text"])
                for r in data.get("results", [])]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ToolOutputError(f"bandit report {name} is not bandit's JSON format: {exc}") from None
