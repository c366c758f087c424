"""Talking to MCP servers: stdio servers inside the sandbox, HTTP servers from the host.

A stdio server runs in the step's sandbox container, next to a small client
script (``stdio_client.py``, standard library only) that the host runs there
through the normal sandboxed-command path; the host reads one result line from
its captured output. An HTTP (streamable-http) server is reached from the host
with the official ``mcp`` SDK. Either way, what comes back is untrusted data:
it is parsed into the models below with every size capped, and argument
checks against a tool's ``inputSchema`` never load anything the schema names.
"""

from __future__ import annotations

import json
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_agentic.errors import ToolError
from prefect_agentic.sandbox.result import CommandResult

CLIENT_SCRIPT = "stdio_client.py"
RESULT_PREFIX = "AGENTIC-MCP-RESULT "
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""The longest single message (JSON-RPC line, or the client's result line) accepted from a server."""
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""The most bytes one HTTP response (a JSON answer, or an event stream) may carry."""
MAX_SCHEMA_BYTES = 256 * 1024
MAX_TOOLS = 1000


class McpError(ToolError):
    """An MCP server could not be reached, misbehaved, or refused the call."""


class McpArgumentsError(ToolError):
    """The arguments do not fit the MCP tool's ``inputSchema`` (or the tool does not exist)."""


class McpToolInfo(BaseModel):
    """One tool a server offers, as ``tools/list`` describes it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None)
    input_schema: dict[str, Any] = Field(default_factory=dict, alias="inputSchema")


class McpCallResult(BaseModel):
    """A ``tools/call`` result: content blocks, optional structured content, error flag."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    content: list[dict[str, Any]] = Field(default_factory=list)
    structured_content: dict[str, Any] | None = Field(default=None, alias="structuredContent")
    is_error: bool = Field(default=False, alias="isError")

    def text(self) -> str:
        """The content as text: text blocks as they are, other blocks named by type and size."""
        parts = []
        for block in self.content:
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                parts.append(block["text"])
            else:
                size = len(json.dumps(block, default=str))
                parts.append(f"[{kind} content, {size} bytes, not shown]")
        if not parts and self.structured_content is not None:
            parts.append(json.dumps(self.structured_content))
        return "\n".join(parts)


def parse_tools(raw: Any) -> list[McpToolInfo]:
    """A ``tools/list`` answer as tool infos (oversized schemas are refused, not trusted)."""
    tools = raw.get("tools") if isinstance(raw, dict) else None
    if not isinstance(tools, list):
        raise McpError("the server's tool list is not a list")
    if len(tools) > MAX_TOOLS:
        raise McpError(f"the server lists {len(tools)} tools, more than {MAX_TOOLS}")
    try:
        infos = [McpToolInfo.model_validate(tool) for tool in tools]
    except ValidationError as exc:
        raise McpError(f"the server's tool list is malformed: {exc.errors()[0]['msg']}") from None
    for info in infos:
        if len(json.dumps(info.input_schema)) > MAX_SCHEMA_BYTES:
            raise McpError(f"the input schema of tool '{info.name}' is over {MAX_SCHEMA_BYTES} bytes")
    return infos


def parse_call(raw: Any) -> McpCallResult:
    try:
        return McpCallResult.model_validate(raw)
    except ValidationError as exc:
        raise McpError(f"the server's tools/call result is malformed: {exc.errors()[0]['msg']}") from None


def check_arguments(tools: Sequence[McpToolInfo], tool: str, arguments: Mapping[str, Any]) -> None:
    """Raise ``McpArgumentsError`` unless ``tool`` exists and ``arguments`` fit its input schema.

    The schema comes from the server: no remote reference is ever fetched
    (``jsonschema`` resolves only what the schema itself contains), a schema
    that refers to itself without end is an error, and the ``pattern`` keyword
    is not checked, so a hostile regular expression cannot hang the host; the
    server still checks its own input.
    """
    import jsonschema
    from jsonschema import validators
    from referencing.exceptions import Unresolvable

    found = next((t for t in tools if t.name == tool), None)
    if found is None:
        known = ", ".join(sorted(t.name for t in tools)[:50]) or "none"
        raise McpArgumentsError(f"the server has no tool '{tool}' (its tools: {known})")
    schema = found.input_schema or {"type": "object"}
    base = validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    checker = validators.extend(base, {"pattern": lambda *_: iter(())})
    try:
        checker.check_schema(schema)
        errors = sorted(checker(schema).iter_errors(dict(arguments)), key=lambda e: list(e.path))
    except (jsonschema.SchemaError, Unresolvable) as exc:
        raise McpError(f"tool '{tool}' has an invalid input schema: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise McpError(f"tool '{tool}' has an input schema that refers to itself without end") from None
    if errors:
        lines = [f"{'.'.join(str(p) for p in e.path) or '(arguments)'}: {e.message[:300]}"
                 for e in errors[:10]]
        raise McpArgumentsError(f"arguments for MCP tool '{tool}' do not fit its input schema: "
                                + "; ".join(lines))


# -- stdio, inside the sandbox ------------------------------------------------------------

def client_script() -> str:
    """The in-container client, shipped inside this package."""
    data = pkgutil.get_data(__name__.rsplit(".", 1)[0], CLIENT_SCRIPT)
    assert data is not None
    return data.decode()


def stdio_command(script_path: str, server: Sequence[str], request: Mapping[str, Any]) -> list[str]:
    """The sandboxed command line: the client script, the request, then the server's own argv.

    The server's argv comes last and as separate words, so the policy's command
    rules see it exactly as they would see the command run on its own.
    """
    return ["python3", script_path, json.dumps(dict(request)), "--", *server]


def stdio_outcome(result: CommandResult, server: str) -> Any:
    """The client script's result, from its captured output (the last result line wins)."""
    line = next((ln for ln in reversed(result.stdout.splitlines()) if ln.startswith(RESULT_PREFIX)), None)
    if line is None:
        detail = result.combined_tail(1000).strip()
        raise McpError(f"MCP server {server} gave no result (client exit code {result.exit_code})"
                       + (f": {detail}" if detail else ""))
    if len(line) > MAX_MESSAGE_BYTES + len(RESULT_PREFIX) + 1024:
        raise McpError(f"MCP server {server} sent a result over {MAX_MESSAGE_BYTES} bytes")
    try:
        outcome = json.loads(line[len(RESULT_PREFIX):])
    except ValueError:
        raise McpError(f"MCP server {server} gave a result that is not JSON") from None
    if not isinstance(outcome, dict) or not isinstance(outcome.get("ok"), bool):
        raise McpError(f"MCP server {server} gave a malformed result")
    if not outcome["ok"]:
        raise McpError(f"MCP server {server}: {str(outcome.get('error'))[:2000]}")
    return outcome.get("result")


def stdio_request(op: str, timeout: float, **fields: Any) -> dict[str, Any]:
    return {"op": op, "timeout": max(1.0, timeout), "max_message_bytes": MAX_MESSAGE_BYTES, **fields}


def stdio_list_tools(run: Callable[[Sequence[str]], CommandResult], script_path: str,
                     server: Sequence[str], timeout: float) -> list[McpToolInfo]:
    """``tools/list`` of the stdio server ``server``, run through ``run`` (a sandboxed command)."""
    result = run(stdio_command(script_path, server, stdio_request("list", timeout)))
    return parse_tools(stdio_outcome(result, describe_stdio(server)))


def stdio_call_tool(run: Callable[[Sequence[str]], CommandResult], script_path: str,
                    server: Sequence[str], tool: str, arguments: Mapping[str, Any],
                    timeout: float) -> McpCallResult:
    request = stdio_request("call", timeout, tool=tool, arguments=dict(arguments))
    result = run(stdio_command(script_path, server, request))
    return parse_call(stdio_outcome(result, describe_stdio(server)))


def describe_stdio(server: Sequence[str]) -> str:
    from prefect_agentic.tools.base import command_line

    return f"'{command_line(list(server))[:200]}' (stdio, in the sandbox)"


# -- streamable HTTP, from the host --------------------------------------------------------

def http_list_tools(url: str, timeout: float, headers: Mapping[str, str] | None = None) -> list[McpToolInfo]:
    """``tools/list`` of the HTTP server at ``url``."""
    return _run_http(url, timeout, None, {}, headers or {})[0]


def http_call_tool(url: str, tool: str, arguments: Mapping[str, Any], timeout: float,
                   headers: Mapping[str, str] | None = None) -> McpCallResult:
    """List the server's tools, check ``arguments`` against ``tool``'s schema, then call it."""
    result = _run_http(url, timeout, tool, arguments, headers or {})[1]
    assert result is not None
    return result


def _run_http(url: str, timeout: float, tool: str | None, arguments: Mapping[str, Any],
              headers: Mapping[str, str]) -> tuple[list[McpToolInfo], McpCallResult | None]:
    import anyio

    refused: list[int] = []  # HTTP error statuses, which the SDK's own errors do not name

    async def session() -> tuple[list[McpToolInfo], McpCallResult | None]:
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        with anyio.fail_after(timeout):
            http = _capped_http_client(url, timeout, headers, refused)
            transport = streamable_http_client(url, http_client=http, max_sse_event_size=MAX_MESSAGE_BYTES)
            async with http, Client(transport, read_timeout_seconds=timeout, mode="legacy",
                              cache=None) as client:
                listed = await client.list_tools()
                tools = parse_tools(listed.model_dump(mode="json", by_alias=True))
                if tool is None:
                    return tools, None
                check_arguments(tools, tool, arguments)
                called = await client.call_tool(tool, dict(arguments))
                return tools, parse_call(called.model_dump(mode="json", by_alias=True))

    try:
        return anyio.run(session)
    except Exception as exc:  # noqa: BLE001 - the SDK wraps any failure in exception groups
        cause = _root_cause(exc)
        if isinstance(cause, ToolError):
            raise cause from None
        if isinstance(cause, TimeoutError):
            raise McpError(f"MCP server {url} did not answer within {timeout:g}s") from None
        status = f" (HTTP {refused[0]})" if refused else ""
        raise McpError(f"MCP server {url} failed{status}: {type(cause).__name__}: {str(cause)[:500]}") from None


def _capped_http_client(url: str, timeout: float, headers: Mapping[str, str], refused: list[int]) -> Any:
    """An HTTP client (the SDK's ``httpx2``) whose responses end with an error past ``MAX_RESPONSE_BYTES``.

    The SDK caps a server-sent event but reads a JSON answer whole; this caps both.
    Error statuses (401, 403, 404...) are noted in ``refused`` for the error message.
    """
    import httpx2

    class CappedStream(httpx2.AsyncByteStream):
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __aiter__(self) -> Any:
            seen = 0
            async for chunk in self.inner:
                seen += len(chunk)
                if seen > MAX_RESPONSE_BYTES:
                    raise McpError(f"MCP server {url} sent a response over {MAX_RESPONSE_BYTES} bytes")
                yield chunk

        async def aclose(self) -> None:
            await self.inner.aclose()

    class CappedTransport(httpx2.AsyncHTTPTransport):
        async def handle_async_request(self, request: Any) -> Any:
            response = await super().handle_async_request(request)
            if response.status_code >= 400:
                refused.append(response.status_code)
            return httpx2.Response(response.status_code, headers=response.headers,
                                   stream=CappedStream(response.stream),
                                   extensions=response.extensions, request=request)

    return httpx2.AsyncClient(transport=CappedTransport(), timeout=httpx2.Timeout(timeout),
                              headers=dict(headers))


def _root_cause(exc: BaseException) -> BaseException:
    while getattr(exc, "exceptions", None):
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return exc
