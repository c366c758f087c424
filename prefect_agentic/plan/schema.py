"""The JSON Schema of plan files, with each tool's argument schema attached.

Editors that understand JSON Schema (VS Code's YAML extension, for one) then
complete and check tool arguments as the author types.
"""

from __future__ import annotations

from typing import Any

from prefect_agentic.plan.models import Plan
from prefect_agentic.tools.registry import ToolRegistry, default_registry

SCHEMA_ID = "https://prefect-agentic.invalid/schemas/plan.json"


def plan_json_schema(registry: ToolRegistry | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a plan, knowing the registered tools."""
    registry = registry or default_registry()
    schema = Plan.model_json_schema(ref_template="#/$defs/{model}")
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    step = defs["Step"]
    step["properties"]["tool"]["enum"] = registry.names()
    conditions = []
    for tool in registry:
        args = tool.Input.model_json_schema(ref_template="#/$defs/{model}")
        for name, sub in args.pop("$defs", {}).items():
            defs.setdefault(name, sub)
        args["description"] = f"Arguments of tool '{tool.name}' v{tool.version}: {tool.description}"
        conditions.append(
            {
                "if": {"properties": {"tool": {"const": tool.name}}, "required": ["tool"]},
                "then": {"properties": {"args": args}},
            }
        )
    step["allOf"] = conditions
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    return schema
