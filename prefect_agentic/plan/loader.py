"""Reading plan files (YAML or JSON) into validated ``Plan`` objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanError
from prefect_agentic.plan.models import PLAN_SCHEMA_VERSION, Plan, future_plan_schema
from prefect_agentic.plan.validation import data_problems, structure_problem
from prefect_agentic.tools.registry import ToolRegistry


def load_plan(path: str | Path, registry: ToolRegistry | None = None,
              policy: ToolPolicy | None = None) -> Plan:
    """Read, parse and fully validate the plan file at ``path`` (against ``policy`` if given)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise PlanError(str(path), [f"line {line}: the file is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                                    f"at offset {exc.start})"]) from None
    return parse_plan(text, source=str(path), registry=registry, policy=policy)


def parse_plan(text: str, source: str = "plan", registry: ToolRegistry | None = None,
               policy: ToolPolicy | None = None) -> Plan:
    """Parse plan text (JSON is YAML too) and validate structure and meaning.

    ``PlanError`` lists every problem at once, in file order, with the line of
    each (``line 7: steps[1] 'fix'.tool: unknown tool 'rufff'; did you mean 'ruff'? …``).
    """
    data = _parse_document(text, source)
    _check_schema_version(data, source)
    problems = data_problems(data, registry, policy)
    if problems:
        lines = _line_finder(text)
        located = sorted(((lines(p.path), n, p) for n, p in enumerate(problems)),
                         key=lambda item: (item[0] or 0, item[1]))
        raise PlanError(source, [p.text(data) for _, _, p in located],
                        lines=[line for line, _, _ in located])
    return Plan.model_validate(data)


def plan_from_data(data: Any, source: str = "plan") -> Plan:
    """Validate the structure of already-parsed plan data."""
    if not isinstance(data, dict):
        raise PlanError(source, [f"(root): expected a mapping with id, goal and steps, got {_kind(data)}"])
    _check_schema_version(data, source)
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(source, [structure_problem(err).text(data) for err in exc.errors()]) from None


def _check_schema_version(data: Any, source: str) -> None:
    """A plan in a newer format than this pack reads is refused with that one reason (its other
    fields may be ones this pack has never heard of, so they are not checked)."""
    found = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(found, int) and not isinstance(found, bool) and found > PLAN_SCHEMA_VERSION:
        raise PlanError(source, [f"schema_version: {future_plan_schema(found)}"])


def _parse_document(text: str, source: str) -> Any:
    if not text.strip():
        raise PlanError(source, ["(root): the file is empty"])
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanError(source, [_yaml_problem(exc)]) from None
    except RecursionError:
        raise PlanError(source, ["(root): the document is nested too deeply to be a plan"]) from None
    if data is None:
        raise PlanError(source, ["(root): the file is empty"])
    return data


def _line_finder(text: str) -> Callable[[tuple[str | int, ...]], int | None]:
    """Maps a problem's path to the 1-based line of the deepest part of it the file has."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lambda path: None

    def line(path: tuple[str | int, ...]) -> int | None:
        node, at = root, root.start_mark.line if root is not None else None
        for item in path:
            step = _child(node, item)
            if step is None:
                break
            node, at = step[0], step[1]
        return None if at is None else at + 1

    return line


def _child(node: yaml.Node | None, item: str | int) -> tuple[yaml.Node, int] | None:
    """The value under ``item`` (a mapping's key, a sequence's position) and the line naming it."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(item):
                return value, key.start_mark.line
    elif isinstance(node, yaml.SequenceNode) and isinstance(item, int) and 0 <= item < len(node.value):
        return node.value[item], node.value[item].start_mark.line
    return None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where the broken construct starts (``context_mark``), then what broke and where."""
    context, mark = getattr(exc, "context_mark", None), getattr(exc, "problem_mark", None)
    start = context or mark
    where = f"line {start.line + 1}, column {start.column + 1}" if start else "(root)"
    what = " ".join(filter(None, [getattr(exc, "context", None), getattr(exc, "problem", None)]))
    if context and mark:
        what += f" (at line {mark.line + 1}, column {mark.column + 1})"
    return f"{where}: not valid YAML/JSON: {what or exc}"


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def dump_plan(plan: Plan, fmt: str = "yaml") -> str:
    """The plan as YAML or JSON text (what `agentic plan -o` writes), with its schema version."""
    data = {"schema_version": plan.schema_version, **plan.model_dump(mode="json", exclude_defaults=True)}
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False)
