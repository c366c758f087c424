"""The ``shell`` tool: one command in the sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput, command_line


class ShellInput(ToolInput):
    command: str | list[str] = Field(
        description="A string runs with `sh -c`; a list runs as the exact argument vector.",
        min_length=1,
    )


class ShellOutput(ToolOutput):
    stdout: str
    stderr: str
    output_truncated: bool = False


class ShellTool(Tool):
    """Runs a command in the sandbox; succeeds by default only when it exits 0."""

    name: ClassVar[str] = "shell"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Run a command in the sandbox container."
    Input: ClassVar[type[ToolInput]] = ShellInput
    Output: ClassVar[type[ToolOutput]] = ShellOutput
    default_success: ClassVar[Mapping[str, Any]] = {"exit_code": 0}

    @classmethod
    def command_preview(cls, args: ToolInput) -> str | None:
        assert isinstance(args, ShellInput)
        return command_line(args.command)

    def run(self, args: ShellInput, ctx: ToolContext) -> Mapping[str, Any]:
        command = ["sh", "-c", args.command] if isinstance(args.command, str) else args.command
        result = ctx.run(command)
        return {
            "exit_code": result.exit_code,
            "log": result.combined_tail(),
            "stdout": result.stdout,
            "stderr": result.stderr,
            "output_truncated": result.output_truncated,
        }
