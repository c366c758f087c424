"""Finds tools by name: the built-in ones and those of third-party packages.

A package adds tools by declaring an entry point in the
``prefect_agentic.tools`` group whose value is a ``Tool`` subclass::

    [project.entry-points."prefect_agentic.tools"]
    mytool = "my_package.tools:MyTool"

A name may have several versions registered at once: a pack that changes a
tool keeps its older adapter registered while runs pinned to it may still be
resumed (docs/guides/upgrades.md). ``get(name)`` is the newest version; a
run's pinned version is ``get(name, version)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib.metadata import entry_points

from packaging.version import InvalidVersion, Version

from prefect_agentic.errors import ToolNotFoundError
from prefect_agentic.tools.base import Tool

ENTRY_POINT_GROUP = "prefect_agentic.tools"


class ToolRegistry:
    """A name → tool classes mapping (one class per version) with a helpful error for unknown names."""

    def __init__(self, tools: Iterable[type[Tool]] = ()) -> None:
        self._tools: dict[str, type[Tool]] = {}
        """The newest version of each tool."""
        self._versions: dict[str, dict[str, type[Tool]]] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: type[Tool]) -> None:
        """Add ``tool``; a second, different tool under the same name and version is an error.

        Another version of a known name is kept beside it; the newest one is what ``get`` finds.
        """
        versions = self._versions.setdefault(tool.name, {})
        known = versions.get(tool.version)
        if known is not None and known is not tool:
            raise ValueError(
                f"two tools are registered as '{tool.name}' v{tool.version}: "
                f"{known.__module__}.{known.__qualname__} and {tool.__module__}.{tool.__qualname__}"
            )
        versions[tool.version] = tool
        self._tools[tool.name] = versions[max(versions, key=_version_order)]

    def unregister(self, name: str) -> None:
        """Remove every version of the tool called ``name`` (no error when there is none)."""
        self._tools.pop(name, None)
        self._versions.pop(name, None)

    def get(self, name: str, version: str | None = None) -> type[Tool]:
        """The tool called ``name`` (its newest version, or ``version``); ``ToolNotFoundError`` lists the known ones."""
        try:
            tool = self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools)) or "none"
            raise ToolNotFoundError(f"unknown tool '{name}' (known tools: {known})") from None
        if version is None or version == tool.version:
            return tool
        try:
            return self._versions[name][version]
        except KeyError:
            raise ToolNotFoundError(f"tool '{name}' v{version} is not installed (installed: "
                                    f"{', '.join(self.versions(name))})") from None

    def versions(self, name: str) -> list[str]:
        """The registered versions of ``name``, oldest first (none for an unknown name)."""
        return sorted(self._versions.get(name, {}), key=_version_order)

    def has(self, name: str, version: str) -> bool:
        return version in self._versions.get(name, {})

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[type[Tool]]:
        return iter(sorted(self._tools.values(), key=lambda t: t.name))

    def names(self) -> list[str]:
        return sorted(self._tools)


def _version_order(version: str) -> tuple[int, Version | str]:
    """PEP 440 order; a version that is not PEP 440 sorts before every one that is, by its text."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


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
