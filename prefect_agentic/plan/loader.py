"""Reading plan files (YAML or JSON) into validated ``Plan`` objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanError
from prefect_agentic.plan.models import Plan
from prefect_agentic.plan.validation import check_plan, step_place
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
    """Parse plan text (JSON is YAML too) and validate structure and meaning."""
    data = _parse_document(text, source)
    return check_plan(plan_from_data(data, source), registry, source, policy)


def plan_from_data(data: Any, source: str = "plan") -> Plan:
    """Validate the structure of already-parsed plan data."""
    if not isinstance(data, dict):
        raise PlanError(source, [f"(root): expected a mapping with id, goal and steps, got {_kind(data)}"])
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(source, [_describe(err, data) for err in exc.errors()]) from None


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


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where the broken construct starts (``context_mark``), then what broke and where."""
    context, mark = getattr(exc, "context_mark", None), getattr(exc, "problem_mark", None)
    start = context or mark
    where = f"line {start.line + 1}, column {start.column + 1}" if start else "(root)"
    what = " ".join(filter(None, [getattr(exc, "context", None), getattr(exc, "problem", None)]))
    if context and mark:
        what += f" (at line {mark.line + 1}, column {mark.column + 1})"
    return f"{where}: not valid YAML/JSON: {what or exc}"


def _describe(err: Any, data: dict[str, Any]) -> str:
    """``steps[1] 'fix'.timeout_seconds: Input should be greater than 0``."""
    loc = list(err["loc"])
    parts: list[str] = []
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps")
        raw = steps[loc[1]] if isinstance(steps, list) and loc[1] < len(steps) else None
        parts.append(step_place(loc[1], raw.get("id") if isinstance(raw, dict) else None))
        loc = loc[2:]
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else f".{item}")
    where = "".join(parts).lstrip(".") or "(root)"
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown field (check its spelling)"
    elif err["type"] == "missing":
        message = "required field is missing"
    return f"{where}: {message}"


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def dump_plan(plan: Plan, fmt: str = "yaml") -> str:
    """The plan as YAML or JSON text (what `agentic plan -o` writes)."""
    data = plan.model_dump(mode="json", exclude_defaults=True)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False)
