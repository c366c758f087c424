"""Checks of a plan: structure, tools, tool arguments, criteria, the step graph, known failures.

Every problem is reported with its place (``steps[1] 'fix'.args.mode``), and
all problems are reported at once, so one round of editing fixes the file: a
step whose structure is broken is still checked for everything its valid
fields allow, and the graph is checked on the steps that have an id. Misspelt
names (fields, tools, step ids, choices) come with a "did you mean".
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanError
from prefect_agentic.plan.criteria import OUTCOME_FIELDS, SuccessCriteria, output_field
from prefect_agentic.plan.graph import concurrent_writer_pairs, find_cycle
from prefect_agentic.plan.models import Plan, PlannerInfo, Step
from prefect_agentic.tools.base import Tool, ToolInput
from prefect_agentic.tools.registry import ToolRegistry, default_registry

Path = tuple[str | int, ...]

_NESTED: dict[tuple[type[BaseModel], str], type[BaseModel]] = {
    (Plan, "steps"): Step, (Plan, "planner"): PlannerInfo, (Step, "success"): SuccessCriteria,
}
"""Where a plan's models nest: the model of each field that holds one (lists skipped)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan, at ``path`` (``("steps", 1, "args", "mode")``)."""

    path: Path
    message: str

    def place(self, data: object) -> str:
        """``steps[1] 'fix'.args.mode``, the step named by its id in ``data`` when it has one."""
        path, parts = list(self.path), []
        if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
            steps = data.get("steps") if isinstance(data, Mapping) else None
            raw = steps[path[1]] if isinstance(steps, list) and path[1] < len(steps) else None
            parts.append(step_place(path[1], raw.get("id") if isinstance(raw, Mapping) else None))
            path = path[2:]
        parts += [f"[{item}]" if isinstance(item, int) else f".{item}" for item in path]
        return "".join(parts).lstrip(".") or "(root)"

    def text(self, data: object) -> str:
        return f"{self.place(data)}: {self.message}"


def step_place(index: int, step_id: object) -> str:
    """How problems name a step: its position and, when known, its id."""
    return f"steps[{index}] '{step_id}'" if isinstance(step_id, str) else f"steps[{index}]"


def did_you_mean(name: object, candidates: Iterable[str]) -> str:
    """``"; did you mean 'depends_on'?"`` when ``name`` is close to one candidate, else ``""``."""
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def check_plan(plan: Plan, registry: ToolRegistry | None = None, source: str = "plan",
               policy: ToolPolicy | None = None) -> Plan:
    """Return ``plan`` if it is valid, else raise ``PlanError`` listing every problem.

    With a ``policy``, a plan that could only run by breaking it is invalid too.
    """
    problems = plan_problems(plan, registry or default_registry(), policy)
    if problems:
        raise PlanError(source, problems)
    return plan


def plan_problems(plan: Plan, registry: ToolRegistry, policy: ToolPolicy | None = None) -> list[str]:
    """Every problem of an already well-formed plan, one line each."""
    data = {"steps": [{"id": s.id} for s in plan.steps]}
    return [p.text(data) for p in semantic_problems(list(enumerate(plan.steps)), registry, policy)]


def data_problems(data: object, registry: ToolRegistry | None = None,
                  policy: ToolPolicy | None = None) -> list[Problem]:
    """Every problem of parsed plan data (a plan file's YAML), structural and semantic."""
    if not isinstance(data, Mapping):
        kind = "nothing" if data is None else type(data).__name__
        return [Problem((), f"expected a mapping with id, goal and steps, got {kind}")]
    problems = []
    try:
        Plan.model_validate(data)
    except ValidationError as exc:
        problems += [structure_problem(err) for err in exc.errors()]
    return problems + semantic_problems(_usable_steps(data), registry or default_registry(), policy)


def semantic_problems(steps: Sequence[tuple[int, Step]], registry: ToolRegistry,
                      policy: ToolPolicy | None = None) -> list[Problem]:
    """Tools, arguments, criteria, graph, known failures and policy of ``(position, step)``s."""
    problems: list[Problem] = []
    checked: list[tuple[int, Step, type[Tool], ToolInput]] = []
    for index, step in steps:
        found, args, step_problems, meant = _step_problems(index, step, registry)
        problems += step_problems
        if found is not None and args is not None:
            checked.append((index, meant, found, args))
    graph, sound = _graph_problems(steps)
    problems += graph
    if sound:
        problems += _known_failures(steps, checked)
    if policy is not None:
        from prefect_agentic.policy import step_policy_problems

        problems += [Problem(("steps", index), p) for index, step, _, _ in checked
                     for p in step_policy_problems(policy, step, registry)]
    return problems


def structure_problem(err: Mapping[str, Any]) -> Problem:
    loc = tuple(err["loc"])
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        hint = did_you_mean(loc[-1], model.model_fields) if model else ""
        message = f"unknown field (check its spelling){hint}"
    elif err["type"] == "missing":
        message = "required field is missing"
    return Problem(loc, message + _choice_hint(err))


def _model_at(path: Path) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Plan
    for item in path:
        if isinstance(item, int):
            continue
        model = _NESTED.get((model, item)) if model else None
    return model


def _choice_hint(err: Mapping[str, Any]) -> str:
    """For a value outside a fixed set (``op: comit``), the closest allowed value."""
    return did_you_mean(err.get("input"), _choices(err)) if err["type"] == "literal_error" else ""


def _choices(err: Mapping[str, Any]) -> list[str]:
    """The allowed values a ``literal_error`` lists (``'check', 'fix' or 'format'``)."""
    return re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))


def _usable_steps(data: Mapping[str, Any]) -> list[tuple[int, Step]]:
    """Steps to check for meaning: each step without its broken fields, if it still has id and tool.

    A step whose id is broken gets a stand-in id (``<position>.invalid-id``), so
    that its tool and arguments are still checked.
    """
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):
        return []
    usable = []
    for index, raw in enumerate(raw_steps):
        if not isinstance(raw, Mapping):
            continue
        try:
            usable.append((index, Step.model_validate(raw)))
            continue
        except ValidationError as exc:
            broken = {err["loc"][0] for err in exc.errors() if err["loc"]}
        kept = {key: value for key, value in raw.items() if key not in broken}
        kept.setdefault("id", f"{index}.invalid-id")
        try:
            usable.append((index, Step.model_validate(kept)))
        except ValidationError:
            continue
    return usable


def _step_problems(index: int, step: Step, registry: ToolRegistry
                   ) -> tuple[type[Tool] | None, ToolInput | None, list[Problem], Step]:
    """The step's own problems; its tool and arguments (as meant, for misspellings) if usable."""
    at = ("steps", index)
    problems = []
    if step.tool not in registry:
        known = registry.names()
        close = difflib.get_close_matches(step.tool, known, n=1, cutoff=0.6)
        problems.append(Problem((*at, "tool"), f"unknown tool '{step.tool}'{did_you_mean(step.tool, known)} "
                                               f"(known tools: {', '.join(known)})"))
        if not close:
            return None, None, problems, step
        step = step.model_copy(update={"tool": close[0]})  # check the rest against the tool meant
    tool = registry.get(step.tool)
    args: ToolInput | None = None
    try:
        args = tool.parse_args(step.args)
    except ValidationError as exc:
        for err in exc.errors():
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = "unknown argument" + did_you_mean(err["loc"][-1], tool.Input.model_fields)
            problems.append(Problem((*at, "args", *err["loc"]),
                                    f"{message}{_choice_hint(err)} (tool '{tool.name}')"))
        args = _meant_args(tool, step, exc)
        if args is not None:  # later checks judge the arguments the suggestions lead to
            step = step.model_copy(update={"args": args.model_dump(exclude_unset=True)})
    if args is not None:
        if tool.changes_files(args) and not step.writes_workspace:
            problems.append(Problem((*at, "writes_workspace"),
                                    f"this '{tool.name}' call changes files; set writes_workspace: "
                                    "true so its changes become the next snapshot"))
    output_fields = tool.Output.model_fields
    for name in step.success.set_fields():
        if name in OUTCOME_FIELDS and output_field(name) not in output_fields:
            supported = [f for f in OUTCOME_FIELDS if output_field(f) in output_fields]
            problems.append(Problem((*at, "success", name),
                                    f"tool '{tool.name}' reports no '{output_field(name)}'; "
                                    f"criteria it supports: {', '.join(supported)}"))
    if (step.success.max_changed_lines is not None or step.success.unchanged_paths) and not (
        step.writes_workspace
    ):
        problems.append(Problem((*at, "success"),
                                "max_changed_lines and unchanged_paths judge a step's changes, "
                                "but the step does not set writes_workspace: true"))
    return tool, args, problems, step


def _meant_args(tool: type[Tool], step: Step, exc: ValidationError) -> ToolInput | None:
    """The arguments with each misspelt name or choice replaced by its suggestion, if they parse."""
    meant = dict(step.args)
    for err in exc.errors():
        if len(err["loc"]) != 1:
            return None
        name = err["loc"][0]
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(name), list(tool.Input.model_fields), n=1, cutoff=0.6)
            if not close or close[0] in meant:
                return None
            meant[close[0]] = meant.pop(name)
        elif err["type"] == "literal_error":
            close = difflib.get_close_matches(str(err.get("input")), _choices(err), n=1, cutoff=0.6)
            if not close:
                return None
            meant[name] = close[0]
        else:
            return None
    try:
        return tool.parse_args(meant)
    except (ValidationError, ValueError, TypeError):
        return None


def _graph_problems(steps: Sequence[tuple[int, Step]]) -> tuple[list[Problem], bool]:
    """Problems of the step graph, and whether it is sound (unique ids, acyclic) despite them.

    Unknown dependencies are reported and then left out, so that a cycle among
    the others is found in the same round.
    """
    problems = []
    ids = [step.id for _, step in steps]
    known = set(ids)
    duplicated = [step_id for step_id, count in Counter(ids).items() if count > 1]
    for step_id in duplicated:
        where = ", ".join(str(i) for i, s in steps if s.id == step_id)
        problems.append(Problem(("steps",), f"id '{step_id}' is used by {ids.count(step_id)} steps "
                                            f"(positions {where})"))
    for index, step in steps:
        for dep in step.depends_on:
            if dep == step.id:
                problems.append(Problem(("steps", index, "depends_on"), "the step depends on itself"))
            elif dep not in known:
                hint = did_you_mean(dep, [i for i in ids if i != step.id])
                problems.append(Problem(("steps", index, "depends_on"), f"unknown step '{dep}'{hint}"))
    pruned = _known_dependencies(steps)
    cycle = find_cycle(pruned)
    if cycle:
        problems.append(Problem(("steps",), f"dependency cycle {' -> '.join(cycle)}"))
    if duplicated or cycle:
        return problems, False
    positions = {s.id: i for i, s in steps}
    racing: dict[str, list[str]] = {}
    for writer, other in concurrent_writer_pairs(pruned):
        racing.setdefault(writer, []).append(other)
    for writer, others in racing.items():
        names = ", ".join(f"'{other}'" for other in others)
        problems.append(Problem(("steps", positions[writer]),
                                f"writes the workspace but may run at the same time as {names}; "
                                "order them with depends_on"))
    return problems, True


def _known_dependencies(steps: Sequence[tuple[int, Step]]) -> list[Step]:
    """The steps with only dependencies on other steps that exist.

    A misspelt dependency counts as the step it is suggested to be, so the
    checks after it judge the plan its author meant, not the typo's effects.
    """
    ids = [step.id for _, step in steps]

    def meant(step: Step) -> list[str]:
        deps = [d if d in ids else next(iter(difflib.get_close_matches(d, ids, n=1, cutoff=0.6)), None)
                for d in step.depends_on]
        return list(dict.fromkeys(d for d in deps if d is not None and d != step.id))

    return [step.model_copy(update={"depends_on": meant(step)}) for _, step in steps]


def _known_failures(steps: Sequence[tuple[int, Step]],
                    checked: Sequence[tuple[int, Step, type[Tool], ToolInput]]) -> list[Problem]:
    """Steps their tool knows cannot succeed where they stand in the plan."""
    meant = {index: step for index, step, _, _ in checked}
    view = Plan.model_construct(id="plan", version=1, goal="validation", planner=None,
                                steps=_known_dependencies([(i, meant.get(i, s)) for i, s in steps]))
    problems = []
    for index, step, tool, _ in checked:
        reason = tool.known_failure(view, view.step(step.id))
        if reason:
            gate = (" (it is gated: approvers would be asked to approve a step that cannot succeed)"
                    if step.requires_approval else "")
            field, _, why = reason.partition(": ") if re.match(r"^[\w.]+: ", reason) else ("", "", reason)
            problems.append(Problem(("steps", index, *filter(None, field.split("."))),
                                    f"cannot succeed: {why}{gate}"))
    return problems
