"""Finds tools by name: the built-in ones and those of third-party packages.

A package adds tools by declaring an entry point in the
``prefect_agentic.tools`` group whose value is a ``Tool`` subclass::

    [project.entry-points."prefect_agentic.tools"]
    mytool = "my_package.tools:MyTool"

A name may have several versions registered at once: a pack that changes a
tool keeps its older adapter registered while runs pinned to it may still be
resumed (docs/guides/upgrades.md). ``get(name)`` is the newest version; a
run's pinned version is ``get(name, version)``.

The pack's own tools are imported when a name is first asked for, not when the
registry is made: a run pays for the tools its plan uses, not for all twenty
(every flow-run process of a deployment loads the registry afresh). That needs
the entry point's name to be its tool's name, which holds for the pack's own
(a test checks it); a third-party entry point may be named otherwise
(``lint-v1``), so those are imported when the registry is made, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from packaging.version import InvalidVersion, Version

from prefect_agentic.errors import ToolNotFoundError
from prefect_agentic.tools.base import Tool

ENTRY_POINT_GROUP = "prefect_agentic.tools"


class ToolRegistry:
    """A name → tool classes mapping (one class per version) with a helpful error for unknown names."""

    def __init__(self, tools: Iterable[type[Tool]] = (), deferred: Iterable[EntryPoint] = ()) -> None:
        """``deferred``: entry points named as their tools, imported when their name is first asked for."""
        self._tools: dict[str, type[Tool]] = {}
        """The newest version of each tool."""
        self._versions: dict[str, dict[str, type[Tool]]] = {}
        self._deferred: dict[str, list[EntryPoint]] = {}
        self._resolving = threading.RLock()
        """Steps in threads may ask for a deferred name at once: one of them imports it."""
        for entry_point in deferred:
            self._deferred.setdefault(entry_point.name, []).append(entry_point)
        for tool in tools:
            self.register(tool)

    def register(self, tool: type[Tool]) -> None:
        """Add ``tool``; a second, different tool under the same name and version is an error.

        Another version of a known name is kept beside it; the newest one is what ``get`` finds.
        """
        self._resolve(tool.name)
        self._add(tool)

    def _add(self, tool: type[Tool]) -> None:
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
        self._deferred.pop(name, None)
        self._tools.pop(name, None)
        self._versions.pop(name, None)

    def get(self, name: str, version: str | None = None) -> type[Tool]:
        """The tool called ``name`` (its newest version, or ``version``); ``ToolNotFoundError`` lists the known ones."""
        self._resolve(name)
        try:
            tool = self._tools[name]
        except KeyError:
            self._resolve_all()
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
        self._resolve(name)
        return sorted(self._versions.get(name, {}), key=_version_order)

    def has(self, name: str, version: str) -> bool:
        self._resolve(name)
        return version in self._versions.get(name, {})

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._resolve(name)
        return name in self._tools

    def __iter__(self) -> Iterator[type[Tool]]:
        self._resolve_all()
        return iter(sorted(self._tools.values(), key=lambda t: t.name))

    def names(self) -> list[str]:
        self._resolve_all()
        return sorted(self._tools)

    def _resolve(self, name: str) -> None:
        """Import and register the deferred entry points named ``name`` (a failed import stays deferred).

        The name leaves ``_deferred`` only once its tools are registered, so a thread that
        finds it gone finds its tools.
        """
        if name not in self._deferred:
            return
        with self._resolving:
            pending = self._deferred.get(name)
            if not pending:
                return
            for tool in [_load(entry_point, name) for entry_point in pending]:
                self._add(tool)
            del self._deferred[name]

    def _resolve_all(self) -> None:
        for name in list(self._deferred):
            self._resolve(name)


def _version_order(version: str) -> tuple[int, Version | str]:
    """PEP 440 order; a version that is not PEP 440 sorts before every one that is, by its text."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


_BUILTINS = (
    "shell:ShellTool", "git:GitTool", "pytest:PytestTool", "ruff:RuffTool", "propose_patch:ProposePatchTool",
    "bisect:BisectTool", "change_request:ChangeRequestTool", "mcp:McpTool",
)
"""The core tools, found even where the pack's entry points are not installed (a source checkout)."""

_OWN_MODULES = "prefect_agentic."


def _load(entry_point: EntryPoint, name: str | None = None) -> type[Tool]:
    """The ``Tool`` subclass an entry point names; with ``name``, it must be the tool called so."""
    tool = entry_point.load()
    if not (isinstance(tool, type) and issubclass(tool, Tool)):
        raise TypeError(
            f"entry point '{entry_point.name}' in group {ENTRY_POINT_GROUP} ({entry_point.value}) "
            "is not a prefect_agentic Tool subclass"
        )
    if name is not None and tool.name != name:
        raise TypeError(
            f"entry point '{entry_point.name}' ({entry_point.value}) is the tool '{tool.name}': an entry "
            "point of prefect-agentic itself must be named as its tool, since it is imported by that name"
        )
    return tool


@lru_cache(maxsize=1)
def default_registry() -> ToolRegistry:
    """Built-in tools plus every tool installed through the entry point group.

    Built-ins come first so that running from a source checkout (without
    installed entry points) still finds them; they and the pack's own entry
    points are deferred until their name is asked for, third-party entry
    points are imported now.
    """
    installed = entry_points(group=ENTRY_POINT_GROUP)
    builtins = [EntryPoint(spec.split(":")[0], f"{_OWN_MODULES}tools.{spec}", ENTRY_POINT_GROUP) for spec in _BUILTINS]
    own = [ep for ep in installed if ep.value.startswith(_OWN_MODULES)]
    registry = ToolRegistry(deferred=[*builtins, *own])
    for entry_point in installed:
        if not entry_point.value.startswith(_OWN_MODULES):
            registry.register(_load(entry_point))
    return registry
