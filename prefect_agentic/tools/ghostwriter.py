"""The ``ghostwrite`` tool: property tests for untested public functions, kept only if they help.

Deterministic from start to end: the suite runs under coverage to find the
public top-level functions none of whose lines ran; the Hypothesis
ghostwriter (``hypothesis write``, formatted by black) writes a test module
for each; every module is made derandomized (a fixed example sequence, no
example database on disk) and then run alone under coverage. A module is kept
only when it passes and executes lines that neither the suite nor an already
kept module reached; the others are deleted, each with its reason.
"""

from __future__ import annotations

import ast
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.errors import ToolError, WorkspaceBoundaryError
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput, command_line
from prefect_agentic.tools.coverage import HYPOTHESIS_HOME, Measurement, measure

MAX_MODULE_BYTES = 2 * 1024 * 1024
"""Largest source module the host parses when looking for untested functions."""
_IMPORT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
DERANDOMIZE = "@settings(derandomize=True, database=None)"
HEADER = ("# Derandomized by prefect-agentic's ghostwrite tool: every run tries the same examples\n"
          "# and no example database is written.\n")
_HYPOTHESIS_IMPORT = re.compile(r"^from hypothesis import (given\b.*)$", re.MULTILINE)


class GhostwriteInput(ToolInput):
    packages: list[str] = Field(
        min_length=1, description="Importable packages or modules (at the workspace root) to write tests for."
    )
    test_dir: str = Field(default="tests/generated", description="Where generated test modules go.")
    test_paths: list[str] = Field(default_factory=list, description="The existing suite; empty = pytest's default.")
    max_functions: int = Field(default=25, ge=1, le=200, description="Write tests for at most this many functions.")

    @field_validator("packages")
    @classmethod
    def _importable(cls, packages: list[str]) -> list[str]:
        for name in packages:
            if not _IMPORT_NAME.match(name):
                raise ValueError(f"'{name}' is not an importable name")
        return packages

    @field_validator("test_dir")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError(f"'{value}' must be a workspace-relative path without '..'")
        return value.rstrip("/")


class GhostwriteOutput(ToolOutput):
    functions: list[str] = Field(default_factory=list, description="Untested public functions found.")
    kept: list[str] = Field(default_factory=list, description="Generated test modules kept.")
    rejected: dict[str, str] = Field(default_factory=dict, description="Function → why its test was dropped.")
    coverage_before: float = 0.0
    lines_gained: int = Field(default=0, ge=0, description="Source lines only the kept tests execute.")
    headline: str = ""


class GhostwriteTool(Tool):
    """Write property tests with the Hypothesis ghostwriter; keep the passing ones that add coverage."""

    name: ClassVar[str] = "ghostwrite"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = ("Write Hypothesis tests for untested public functions; keep those that "
                                  "pass and raise coverage.")
    Input: ClassVar[type[ToolInput]] = GhostwriteInput
    Output: ClassVar[type[ToolOutput]] = GhostwriteOutput

    @classmethod
    def changes_files(cls, args: ToolInput) -> bool:
        return True

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "generate"

    def run(self, args: GhostwriteInput, ctx: ToolContext) -> Mapping[str, Any]:
        suite = measure(ctx, args.test_paths, args.packages, tag="suite")
        functions = untested_functions(ctx.files, args.packages, suite.executed)[: args.max_functions]
        written, rejected = self._write(functions, args.test_dir, ctx)
        covered = {path: set(lines) for path, lines in suite.executed.items()}
        kept = []
        for index, (target, module) in enumerate(written.items()):
            try:
                alone = measure(ctx, [module], args.packages, tag=f"generated-{index}")
                reason = _rejection(alone, covered)
            except ToolError as exc:  # e.g. the module does not even import
                reason = f"does not run: {_first_error(str(exc))}"
            if reason:
                ctx.files.unlink(module)
                rejected[target] = reason
                continue
            kept.append(module)
            for path, lines in alone.executed.items():
                covered.setdefault(path, set()).update(lines)
        gained = sum(len(lines) for lines in covered.values()) - sum(len(v) for v in suite.executed.values())
        return {"exit_code": 0, "functions": functions, "kept": kept, "rejected": rejected,
                "coverage_before": suite.percent, "lines_gained": gained,
                "log": "\n".join([*(f"kept {m}" for m in kept), *(f"dropped {t}: {r}" for t, r in rejected.items())]),
                "headline": f"kept {len(kept)} of {len(functions)} generated test(s), +{gained} lines covered"}

    @staticmethod
    def _write(functions: list[str], test_dir: str, ctx: ToolContext) -> tuple[dict[str, str], dict[str, str]]:
        """Ghostwrite one module per function in the sandbox; returns (target → module, target → error)."""
        if not functions:
            return {}, {}
        modules = {t: f"{test_dir}/test_gen_{t.replace('.', '_')}.py" for t in functions}
        errors = ctx.report_dir_in_sandbox
        loop = " ".join(
            f"{HYPOTHESIS_HOME} hypothesis write {command_line([t])} > {command_line([m])} 2> {errors}/{t}.err "
            f"|| rm -f {command_line([m])};" for t, m in modules.items())
        ctx.run(["sh", "-c", f"mkdir -p {command_line([test_dir])} && {loop}"])
        written, rejected = {}, {}
        for target, module in modules.items():
            found = ctx.files.lstat(module)
            if found is not None and stat.S_ISREG(found.st_mode) and found.st_size:
                ctx.files.write_text(module, derandomized(ctx.files.read_text(module)),
                                     owner=(found.st_uid, found.st_gid))
                written[target] = module
            else:
                ctx.files.unlink(module)
                error = (ctx.reports.read_optional(f"{target}.err") or b"").decode("utf-8", errors="replace")
                tail = error.strip().splitlines()[-1:]
                rejected[target] = f"the ghostwriter wrote nothing: {' '.join(tail) or 'no message'}"
        return written, rejected


def _rejection(alone: Measurement, covered: dict[str, set[int]]) -> str | None:
    counts = alone.counts
    if counts.get("tests_failed") or not counts.get("passed"):
        failing = ", ".join(counts.get("failing_tests", [])) or "no test passed"
        return f"fails ({failing})"
    if not any(lines - covered.get(path, set()) for path, lines in alone.executed.items()):
        return "adds no coverage"
    return None


def _first_error(message: str) -> str:
    """pytest's first ``E`` line (the exception), else the message's first line."""
    lines = message.splitlines() or [""]
    return next((line[1:].strip() for line in lines if line.startswith("E ")), lines[0])


def derandomized(source: str) -> str:
    """A ghostwritten module whose ``@given`` tests always try the same examples and write no database."""
    lines = source.splitlines(keepends=True)
    top = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    body = []
    for line in lines[top:]:
        if line.lstrip().startswith("@given("):
            body.append(line[: len(line) - len(line.lstrip())] + DERANDOMIZE + "\n")
        body.append(line)
    text, found = _HYPOTHESIS_IMPORT.subn(r"from hypothesis import \1, settings", "".join(body), count=1)
    return "".join([*lines[:top], HEADER, "" if found else "from hypothesis import settings\n", text])


def untested_functions(files: WorkspaceFiles, packages: list[str], executed: dict[str, set[int]]) -> list[str]:
    """Dotted names of public top-level functions in ``packages`` none of whose lines ran.

    The modules are workspace content: read through the boundary (no links, size cap), and
    a module the parser cannot take (syntax, absurd nesting) is skipped.
    """
    found = []
    for relative in _module_files(files, packages):
        module = relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        ran = executed.get(relative, set())
        try:
            tree = ast.parse(files.read_text(relative, limit=MAX_MODULE_BYTES), filename=relative)
        except (SyntaxError, RecursionError, MemoryError, ValueError, WorkspaceBoundaryError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                body = range(node.body[0].lineno, (node.end_lineno or node.lineno) + 1)
                if not ran.intersection(body):
                    found.append(f"{module}.{node.name}")
    return sorted(found)


def _module_files(files: WorkspaceFiles, packages: list[str]) -> list[str]:
    found: set[str] = set()
    for name in packages:
        base = name.replace(".", "/")
        if files.is_dir(base):
            for here, _, names in files.sub(base).walk():
                folder = f"{base}/{here}" if here else base
                found.update(f"{folder}/{n}" for n in names if n.endswith(".py") and not n.startswith("test_")
                             and files.is_file(f"{folder}/{n}"))
        elif files.is_file(f"{base}.py"):
            found.add(f"{base}.py")
    return sorted(found)
