"""Tools from MCP servers: the ``mcp`` tool and the clients it uses."""

from prefect_agentic.tools.mcp.tool import McpInput, McpOutput, McpTool

__all__ = ["McpInput", "McpOutput", "McpTool"]
