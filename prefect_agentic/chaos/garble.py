"""``garbled_output``: the reports a tool reads are spoiled on their way from the workspace to the tool.

Tools read their reports (pytest's JUnit XML, ruff's and bandit's JSON,
coverage's JSON) through one door, ``ToolContext.reports``; a chaos run
wraps that view, so every tool gets the same faults from one place. Each mode
is a way real reports go bad: ``truncated`` (a writer killed half-way),
``garbled`` (binary junk, invalid UTF-8), ``wrong_type`` (well-formed, but
of the wrong shape: a JSON object where a list belongs, numbers that are
words in XML), and ``huge`` (over the host's read cap: the view's cap is set
below the file's size, so the boundary's own size check refuses it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from prefect_agentic.boundary import RelPath, WorkspaceFiles

WRONG_TYPE_XML = b'<testsuite name="chaos" tests="many" time="soon"><testcase name="t" time="later"/></testsuite>'


def spoil(data: bytes, mode: str) -> bytes:
    """``data`` as ``mode`` spoils it (``huge`` is done by the read cap, not here)."""
    if mode == "truncated":
        return data[: len(data) // 2]
    if mode == "garbled":
        return b"\xff\xfe\x00garbled\x00" + data[len(data) // 3:][::-1]
    if mode == "wrong_type":
        head = data.lstrip()[:1]
        if head == b"<":
            return WRONG_TYPE_XML
        return b'{"chaos": "an object where a list belongs"}' if head == b"[" else b'["a list", "where", "an object belongs"]'
    return data


@dataclass(frozen=True)
class SpoiledReports(WorkspaceFiles):
    """A ``WorkspaceFiles`` view whose reads come back spoiled by ``mode``; ``spoiling`` is told first."""

    mode: str = "truncated"
    spoiling: Callable[[str], None] = lambda _name: None

    def sub(self, relative: RelPath) -> WorkspaceFiles:
        return dataclasses.replace(self, prefix=super().sub(relative).prefix)

    def read_bytes(self, relative: RelPath, *, limit: int | None = None) -> bytes:
        name = self.describe(relative)
        if self.mode == "huge":
            found = self.lstat(relative)
            if found is not None and found.st_size > 0:
                self.spoiling(name)
                limit = found.st_size // 2
            return super().read_bytes(relative, limit=limit)
        data = super().read_bytes(relative, limit=limit)
        self.spoiling(name)
        return spoil(data, self.mode)
