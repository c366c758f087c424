"""Finds tools by name: the built-in ones and those of third-party packages.

A package adds tools by declaring an entry point in the
``prefect_agentic.tools`` group whose value is a ``Tool`` subclass::

    [project.entry-points."prefect_agentic.tools"]
    mytool = "my_package.tools:MyTool"
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib.metadata import entry_points

from prefect_agentic.errors import ToolNotFoundError
from prefect_agentic.tools.base import Tool

ENTRY_POINT_GROUP = "prefect_agentic.tools"


class ToolRegistry:
    """A name → tool class mapping with a helpful error for unknown names."""

    def __init__(self, tools: Iterable[type[Tool]] = ()) -> None:
        self._tools: dict[str, type[Tool]] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: type[Tool]) -> None:
        """Add ``tool``; a second, different tool under the same name is an error."""
        known = self._tools.get(tool.name)
        if known is not None and known is not tool:
            raise ValueError(
                f"two tools are registered as '{tool.name}': "
                f"{known.__module__}.{known.__qualname__} and {tool.__module__}.{tool.__qualname__}"
            )
        self._tools[tool.name] = tool

    def unregister(self, name: str) -> None:
        """Remove the tool called ``name`` (no error when there is none)."""
        self._tools.pop(name, None)

    def get(self, name: str) -> type[Tool]:
        """The tool called ``name``; ``ToolNotFoundError`` lists the known ones."""
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools)) or "none"
            raise ToolNotFoundError(f"unknown tool '{name}' (known tools: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[type[Tool]]:
        return iter(sorted(self._tools.values(), key=lambda t: t.name))

    def names(self) -> list[str]:
        return sorted(self._tools)


def _builtin_tools() -> list[type[Tool]]:
    from prefect_agentic.tools.bisect import BisectTool
    from prefect_agentic.tools.change_request import ChangeRequestTool
    from prefect_agentic.tools.git import GitTool
    from prefect_agentic.tools.mcp import McpTool
    from prefect_agentic.tools.propose_patch import ProposePatchTool
    from prefect_agentic.tools.pytest import PytestTool
    from prefect_agentic.tools.ruff import RuffTool
    from prefect_agentic.tools.shell import ShellTool

    return [ShellTool, GitTool, PytestTool, RuffTool, ProposePatchTool, BisectTool,
            ChangeRequestTool, McpTool]


@lru_cache(maxsize=1)
def default_registry() -> ToolRegistry:
    """Built-in tools plus every tool installed through the entry point group.

    Built-ins are registered first so that running from a source checkout
    (without installed entry points) still finds them.
    """
    registry = ToolRegistry(_builtin_tools())
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        tool = ep.load()
        if not (isinstance(tool, type) and issubclass(tool, Tool)):
            raise TypeError(
                f"entry point '{ep.name}' in group {ENTRY_POINT_GROUP} ({ep.value}) "
                "is not a prefect_agentic Tool subclass"
            )
        registry.register(tool)
    return registry
