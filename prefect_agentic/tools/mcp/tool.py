"""The ``mcp`` tool: call one tool of an MCP server from a plan step.

The server is either a stdio server started inside the step's sandbox
container (``server: {command: [...]}``, network off as for every command) or
a streamable-HTTP server reached from the host (``server: {url: ...}``), which
the tool policy must list in ``mcp_servers``. The call goes through
``Tool.invoke`` like any built-in tool, so policy, approval, budget and the
audit record apply unchanged; its policy operation is ``mcp:<tool name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput, command_line
from prefect_agentic.tools.mcp.client import (
    McpArgumentsError,
    McpCallResult,
    McpError,
    check_arguments,
    client_script,
    describe_stdio,
    http_call_tool,
    stdio_call_tool,
    stdio_list_tools,
)

CLIENT_FILE = "mcp_client.py"
SCRIPT_MARGIN_SECONDS = 5.0
"""The in-container client gives up this long before the step's deadline, so it can still report."""


class StdioServer(BaseModel):
    """A server started in the sandbox, spoken to over its stdin and stdout."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(min_length=1, description="The server's argument vector (cwd: the workspace).")


class HttpServer(BaseModel):
    """A streamable-HTTP server the host connects to (it must be in the policy's ``mcp_servers``)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://\S+$", max_length=2000, description="The server's MCP endpoint.")
    bearer_secret: str | None = Field(
        default=None, description="A secret of the step sent as `Authorization: Bearer <value>`.")


class McpInput(ToolInput):
    server: StdioServer | HttpServer = Field(description="`{command: [...]}` or `{url: ...}`.")
    tool: str = Field(min_length=1, max_length=200, description="The MCP tool to call.")
    arguments: dict[str, Any] = Field(default_factory=dict,
                                      description="Its arguments, checked against its inputSchema.")
    max_output_chars: int = Field(default=65536, ge=1, le=1_000_000,
                                  description="Text kept from the result; the rest is cut.")


class McpOutput(ToolOutput):
    server: str
    tool: str
    text: str
    structured: dict[str, Any] | None = None
    truncated: bool = False


class McpTool(Tool):
    """Calls a tool of an MCP server; the step fails when the server reports an error."""

    name: ClassVar[str] = "mcp"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Call a tool of an MCP server (stdio in the sandbox, or HTTP on the allow-list)."
    Input: ClassVar[type[ToolInput]] = McpInput
    Output: ClassVar[type[ToolOutput]] = McpOutput

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        assert isinstance(args, McpInput)
        return args.tool

    @classmethod
    def command_preview(cls, args: ToolInput) -> str | None:
        assert isinstance(args, McpInput)
        return command_line(args.server.command) if isinstance(args.server, StdioServer) else None

    @classmethod
    def mcp_server_url(cls, args: ToolInput) -> str | None:
        assert isinstance(args, McpInput)
        return args.server.url if isinstance(args.server, HttpServer) else None

    def run(self, args: McpInput, ctx: ToolContext) -> Mapping[str, Any]:
        server = args.server
        where = f"step '{ctx.step_id}', MCP tool '{args.tool}'"
        try:
            if isinstance(server, HttpServer):
                described = server.url
                headers = ({"Authorization": f"Bearer {ctx.secret(server.bearer_secret)}"}
                           if server.bearer_secret else {})
                result = http_call_tool(server.url, args.tool, args.arguments, timeout=ctx.remaining(),
                                        headers=headers)
            else:
                described = describe_stdio(server.command)
                result = self._call_stdio(server.command, args, ctx)
            return _output(result, described, args)
        except McpArgumentsError as exc:
            raise McpArgumentsError(f"{where}: {exc}") from None
        except McpError as exc:
            raise McpError(f"{where}: {exc}") from None

    def _call_stdio(self, command: list[str], args: McpInput, ctx: ToolContext) -> McpCallResult:
        ctx.reports.write_text(CLIENT_FILE, client_script())
        script = f"{ctx.report_dir_in_sandbox}/{CLIENT_FILE}"
        tools = stdio_list_tools(ctx.run, script, command, _client_timeout(ctx))
        check_arguments(tools, args.tool, args.arguments)
        return stdio_call_tool(ctx.run, script, command, args.tool, args.arguments, _client_timeout(ctx))


def _client_timeout(ctx: ToolContext) -> float:
    left = ctx.remaining()
    return max(1.0, min(left - SCRIPT_MARGIN_SECONDS, left * 0.8))


def _output(result: McpCallResult, server: str, args: McpInput) -> dict[str, Any]:
    text = result.text()
    if result.is_error:
        raise McpError(f"MCP tool '{args.tool}' on {server} reported an error: {text[:2000]}")
    truncated = len(text) > args.max_output_chars
    text = text[:args.max_output_chars]
    structured = result.structured_content
    if structured is not None and len(str(structured)) > args.max_output_chars:
        structured, truncated = None, True
    return {"exit_code": 0, "log": text[-4000:], "server": server, "tool": args.tool, "text": text,
            "structured": structured, "truncated": truncated}
