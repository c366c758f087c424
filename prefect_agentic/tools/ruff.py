"""The ``ruff`` tool: lint (check, fix) and format in the sandbox."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from prefect_agentic.errors import ToolError, ToolOutputError
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput

_REFORMATTED = re.compile(r"(\d+) files? (?:would be )?reformatted")


class RuffInput(ToolInput):
    mode: Literal["check", "fix", "format", "format-check"] = Field(
        description=(
            "check: report violations; fix: apply safe fixes and report what remains; "
            "format: reformat files; format-check: count files that need formatting."
        )
    )
    paths: list[str] = Field(default_factory=lambda: ["."])
    select: list[str] = Field(default_factory=list, description="Rule codes or prefixes to enable.")
    ignore: list[str] = Field(default_factory=list, description="Rule codes or prefixes to skip.")


class RuffOutput(ToolOutput):
    lint_violations: int | None = Field(
        default=None,
        ge=0,
        description="check/fix: remaining violations; format-check: files that need formatting.",
    )
    by_rule: dict[str, int] = Field(default_factory=dict)
    files_reformatted: int = Field(default=0, ge=0)


class RuffTool(Tool):
    """Run ruff; violations are results, a ruff error (exit code 2) fails the step."""

    name: ClassVar[str] = "ruff"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Lint (check, fix) or format Python code with ruff."
    Input: ClassVar[type[ToolInput]] = RuffInput
    Output: ClassVar[type[ToolOutput]] = RuffOutput

    @classmethod
    def changes_files(cls, args: ToolInput) -> bool:
        return isinstance(args, RuffInput) and args.mode in ("fix", "format")

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        assert isinstance(args, RuffInput)
        return args.mode

    def run(self, args: RuffInput, ctx: ToolContext) -> Mapping[str, Any]:
        if args.mode in ("check", "fix"):
            return self._lint(args, ctx)
        return self._format(args, ctx)

    def _lint(self, args: RuffInput, ctx: ToolContext) -> Mapping[str, Any]:
        ctx.reports.unlink("ruff.json")
        command = ["ruff", "check", "--no-cache", "--output-format", "json",
                   "--output-file", f"{ctx.report_dir_in_sandbox}/ruff.json"]
        command += ["--fix"] if args.mode == "fix" else []
        command += [f"--select={','.join(args.select)}"] if args.select else []
        command += [f"--ignore={','.join(args.ignore)}"] if args.ignore else []
        result = ctx.run([*command, *args.paths])
        log = result.combined_tail()
        report = ctx.reports.read_optional("ruff.json")
        if result.exit_code not in (0, 1) or report is None:
            raise ToolError(f"ruff check failed (exit code {result.exit_code}):\n{log}")
        try:
            findings = json.loads(report or b"[]")
            rules = Counter(str(f.get("code") or "syntax-error") for f in findings)
        except (ValueError, AttributeError, TypeError) as exc:  # ValueError: bad JSON or bad UTF-8
            raise ToolOutputError(f"ruff report ruff.json is not ruff's JSON format: {exc}") from None
        return {"exit_code": result.exit_code, "log": log,
                "lint_violations": sum(rules.values()), "by_rule": dict(sorted(rules.items()))}

    def _format(self, args: RuffInput, ctx: ToolContext) -> Mapping[str, Any]:
        command = ["ruff", "format", "--no-cache"] + (["--check"] if args.mode == "format-check" else [])
        result = ctx.run([*command, *args.paths])
        log = result.combined_tail()
        if result.exit_code not in (0, 1):
            raise ToolError(f"ruff format failed (exit code {result.exit_code}):\n{log}")
        match = _REFORMATTED.search(result.stdout + result.stderr)
        count = int(match.group(1)) if match else 0
        output: dict[str, Any] = {"exit_code": result.exit_code, "log": log}
        if args.mode == "format-check":
            output["lint_violations"] = count
        else:
            output["files_reformatted"] = count
        return output
