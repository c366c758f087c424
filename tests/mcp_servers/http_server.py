"""A small MCP server over streamable HTTP on 127.0.0.1, for the MCP tool tests.

Run as ``python http_server.py PORT [TOKEN]``; it serves ``http://127.0.0.1:PORT/mcp``.
With a TOKEN, a request without ``Authorization: Bearer TOKEN`` gets 401.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("test-http")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@server.tool()
def refuse(reason: str) -> str:
    """Always fails with ``reason``."""
    raise ValueError(reason)


def require_token(app: Any, token: str) -> Any:
    """The ASGI ``app`` behind a bearer-token check."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"missing or wrong token"})
            return
        await app(scope, receive, send)

    return guarded


if __name__ == "__main__":
    port = int(sys.argv[1])
    if len(sys.argv) > 2:
        uvicorn.run(require_token(server.streamable_http_app(), sys.argv[2]), host="127.0.0.1", port=port,
                    log_level="warning")
    else:
        server.run("streamable-http", host="127.0.0.1", port=port)
