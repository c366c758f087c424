"""Reference pages generated from the code at `mkdocs build` (a MkDocs hook, see mkdocs.yml).

The CLI reference is read from the `agentic` command itself (its Click tree), the plan
format from the plan JSON Schema, the tools from the tool registry, the blocks from
their Prefect block schemas and the events from the table the runs name their events by
(``prefect_agentic.record.events.EVENTS``), so none of them can drift from the code. The block logos
are copied from the package (``prefect_agentic/blocks/logos``) into the site, where the
block types' ``logo_url`` points (see ``prefect_agentic.blocks.branding``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

GENERATED = {
    "reference/cli.md": "cli_reference",
    "reference/plan-format.md": "plan_reference",
    "reference/tools.md": "tools_reference",
    "reference/blocks.md": "blocks_reference",
    "reference/events.md": "events_reference",
}


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages and the block logos to the site."""
    for uri, builder in GENERATED.items():
        files.append(File.generated(config, uri, content=globals()[builder]()))
    from prefect_agentic.blocks.branding import LOGO_DIR

    for logo in sorted(LOGO_DIR.glob("*.svg")):
        files.append(File.generated(config, f"assets/logos/{logo.name}", content=logo.read_bytes()))
    return files


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


# --- CLI ---------------------------------------------------------------------------------------

def cli_reference() -> str:
    import typer

    from prefect_agentic.cli.main import app

    root = typer.main.get_command(app)
    parts = ["# CLI reference", "",
             "Generated from the `agentic` command itself at every docs build. "
             "Exit codes are listed in [Exit codes](exit-codes.md).", ""]
    parts += _command_section(root, ["agentic"], root.context_class(root, info_name="agentic"))
    return "\n".join(parts) + "\n"


def _command_section(cmd: Any, path: list[str], ctx: Any) -> list[str]:
    # typer ships its own fork of click, so the tree is read by duck typing, not isinstance
    name = " ".join(path)
    level = "#" * min(len(path) + 1, 4)
    lines = [f"{level} `{name}`", ""]
    if cmd.help:
        lines += [_clean_help(cmd.help), ""]
    usage = re.sub(r"\{(\w+)\}", lambda m: m[1].upper(), " ".join(cmd.collect_usage_pieces(ctx)))
    lines += ["```text", f"{name} {usage}".rstrip(), "```", ""]
    rows = []
    for param in cmd.params:
        if param.param_type_name == "argument":
            rows.append((f"`{(param.metavar or param.name).upper()}`", "argument", param.required, "",
                         getattr(param, "help", None) or ""))
        elif param.param_type_name == "option" and not param.hidden and param.name not in COMPLETION:
            default = "" if param.default in (None, False, (), []) or callable(param.default) \
                else f"`{_default(param.default)}`"
            rows.append((", ".join(f"`{o}`" for o in param.opts + param.secondary_opts),
                         "flag" if getattr(param, "is_flag", False) else _kind(param),
                         param.required, default, param.help or ""))
    if rows:
        lines += ["| parameter | kind | required | default | meaning |", "|---|---|---|---|---|"]
        lines += [f"| {p} | {k} | {'yes' if r else ''} | {d} | {_cell(h)} |" for p, k, r, d, h in rows]
        lines.append("")
    if hasattr(cmd, "list_commands"):
        for sub_name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, sub_name)
            if sub is None or sub.hidden:
                continue
            lines += _command_section(sub, [*path, sub_name], sub.context_class(sub, parent=ctx, info_name=sub_name))
    return lines


COMPLETION = {"install_completion", "show_completion"}


def _kind(param: Any) -> str:
    """The option's value type, from its annotation (``Optional[int]`` → ``int``)."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is None:
        return "value"
    name = getattr(annotation, "__name__", None) or str(annotation)
    return re.sub(r"typing\.|Optional\[(.*)\]", r"\1", name)


def _default(value: object) -> str:
    return getattr(value, "value", value) if not isinstance(value, (list, tuple)) else ", ".join(map(str, value))


def _clean_help(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines()).replace("\b\n", "")


# --- Plan format -------------------------------------------------------------------------------

def plan_reference() -> str:
    from prefect_agentic.plan import plan_json_schema

    schema = plan_json_schema()
    defs = schema.get("$defs", {})
    parts = ["# Plan format", "",
             "Generated from the plan JSON Schema (`agentic schema`) at every docs build. "
             "A plan file is YAML or JSON; unknown keys are errors. Each tool's `args` are listed "
             "in [Tools](tools.md).", "",
             "## Plan", "", schema.get("description", ""), "", _properties_table(schema, frozenset(defs))]
    for name in sorted(defs):
        if name.endswith("Input") or name.endswith("Output"):
            continue
        parts += [f"## {name}", "", defs[name].get("description", ""), "",
                  _properties_table(defs[name], frozenset(defs))]
    parts += ["## The whole schema", "", "Editors that read JSON Schema (VS Code's YAML extension, "
              "for one) check plan files against it: `agentic schema -o plan.schema.json`.", "",
              '??? note "plan.schema.json"', "", "    ```text",
              *["    " + line for line in json.dumps(schema, indent=2).splitlines()], "    ```", ""]
    return "\n".join(parts)


def _type_of(prop: dict[str, Any], linkable: set[str]) -> str:
    if "$ref" in prop:
        target = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{target}](#{target.lower()})" if target in linkable else f"`{target}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type_of(p, linkable) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(prop.get('items', {}), linkable)}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {_type_of(prop['additionalProperties'], linkable)}"
    return str(kind)


def _properties_table(schema: dict[str, Any], linkable: frozenset[str] = frozenset()) -> str:
    props = schema.get("properties", {})
    if not props:
        return ""
    required = set(schema.get("required", []))
    rows = ["| field | type | required | default | meaning |", "|---|---|---|---|---|"]
    for name, prop in props.items():
        default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        limits = [f"{k} `{prop[k]}`" for k in ("minimum", "maximum", "minLength", "maxLength", "pattern")
                  if k in prop]
        meaning = prop.get("description", "") + (f" ({'; '.join(limits)})" if limits else "")
        rows.append(f"| `{name}` | {_type_of(prop, set(linkable))} | {'yes' if name in required else ''} | "
                    f"{_cell(default)} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


# --- Tools -------------------------------------------------------------------------------------

def tools_reference() -> str:
    from prefect_agentic.tools.registry import default_registry

    parts = ["# Tools", "",
             "Generated from the tool registry (`agentic tools`) at every docs build: each tool's "
             "name, version, purpose, its arguments (a step's `args`) and its output fields, which "
             "success criteria can test.", ""]
    for tool in default_registry():
        parts += [f"## `{tool.name}` v{tool.version}", "", tool.description, "",
                  f"Implemented by `{tool.__module__}.{tool.__qualname__}`.", "",
                  "**Arguments**", "", _properties_table(tool.Input.model_json_schema()) or "none", "",
                  "**Output**", "", _properties_table(tool.Output.model_json_schema()) or "none", ""]
    return "\n".join(parts)


# --- Blocks ------------------------------------------------------------------------------------

def blocks_reference() -> str:
    import prefect_agentic.blocks as blocks
    from prefect_agentic.blocks.branding import block_classes

    parts = ["# Blocks", "",
             "Generated from the block classes at every docs build. Register them all on the "
             "current Prefect API with `prefect block register -m prefect_agentic` (or "
             "`agentic init`, which also saves `default` documents); they then appear under "
             "**Blocks → +** in the Prefect UI with the logo and description shown here.", ""]
    for cls in block_classes():
        slug = cls.get_block_type_slug()
        logo = Path(str(cls._logo_url)).name
        parts += [f"## {cls.get_block_type_name()} {{ #{slug} }}", "",
                  f"![logo](../assets/logos/{logo}){{ width=48 }}", "",
                  cls.get_description() or "", "",
                  f"Python: `{blocks.__name__}.{cls.__name__}`; slug `{slug}`; load with "
                  f"`{cls.__name__}.load(\"NAME\")`.", "",
                  _properties_table(cls.model_json_schema()), ""]
    return "\n".join(parts)


# --- Events ------------------------------------------------------------------------------------

def events_reference() -> str:
    """The events page; its resource tables are what ``RunIds`` itself gives for placeholder ids,
    so they show exactly what the emitter sends."""
    from prefect_agentic.record.events import EVENTS, LEFT_OUT_OF_PAYLOAD, RunIds

    ids = RunIds("<flow run id>", "<run key>", "<plan id>", "<request id>")
    run_labels = ids.resource(None)
    parts = ["# Events and artifacts", "",
             ("Generated at every docs build from the table the runs name their events by "
              "(`EVENTS` in `prefect_agentic.record.events`), so every event a run emits is listed here."), "",
             ("Every Prefect event of a run is derived from an audit record that is already stored, so "
              "events never say anything the audit log does not. An automation can match on the run's "
              "resource or on any related one; an example (a notification on a policy denial) is in "
              "[Audit, events, metrics and replay](../concepts/audit.md#run-artifacts-and-events)."), "",
             "## Resources", "",
             "The primary resource is the run; an event of a step's record also has the step's label.", "",
             "| label | value |", "|---|---|"]
    for label, value in ids.resource("<step id>").items():
        parts.append(f"| `{label}` | `{value}`{'' if label in run_labels else STEP_ONLY} |")
    parts += ["", "Related resources:", "", "| role | resource id | name |", "|---|---|---|"]
    parts += [f"| `{r['prefect.resource.role']}` | `{r['prefect.resource.id']}` | "
              f"{_code(r.get('prefect.resource.name'))} |" for r in ids.related()]
    left_out = " and ".join(f"`{key}`" for key in LEFT_OUT_OF_PAYLOAD)
    parts += ["", (f"The payload is the record's data without {left_out}, plus the record's place in "
                   "the audit log: `step`, `seq` and `record_hash`."), "",
              "## Events", "",
              "| event | from the audit record | meaning |", "|---|---|---|"]
    for spec in EVENTS:
        source = f"`{spec.record}`" + (f" (`{spec.key}`)" if spec.key else "")
        if spec.when:
            source += " with " + ", ".join(f"`{key}: {json.dumps(value)}`" for key, value in spec.when.items())
        names = "<br>".join(f"`{name}`" for name in spec.names())
        parts.append(f"| {names} | {source} | {_cell(spec.meaning)} |")
    parts += ["", ("More on the `versions-` events in [Upgrading the pack under running work]"
                   "(../guides/upgrades.md), on the `chaos` events in "
                   "[Chaos runs](../guides/chaos.md#what-a-chaos-run-records)."), "",
              "## Artifacts", "",
              ("The artifacts a run publishes (summary, step table, progress) are described in "
               "[Audit, events, metrics and replay](../concepts/audit.md#run-artifacts-and-events), the "
               "notice of a gate that waits in [Audit logs across suspend and resume]"
               "(../concepts/audit-suspend.md#a-run-that-waits-for-a-human-says-so)."), ""]
    return "\n".join(parts)


STEP_ONLY = " (a step's records only)"


def _code(text: str | None) -> str:
    return f"`{text}`" if text else ""
