"""Tool contracts and the built-in tools.

A tool is a named, versioned operation with a pydantic input model and a
pydantic output model. Plans name tools; the registry finds them.
"""

from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.tools.registry import ToolRegistry, default_registry

__all__ = ["Tool", "ToolContext", "ToolInput", "ToolOutput", "ToolRegistry", "default_registry"]
