"""What a run is pinned to, and what a resumed run does when the installed pack differs.

A run pins, when it starts, the versions that decide what its steps do: the
pack, the plan schema, the planner, every tool adapter its plan uses and the
sandbox image by its content digest. The pins go into the run's
``run_started`` audit record. A later process of the same flow run (resumed
after a suspension at a gate, retried after a crash, possibly on a worker with
a newer pack) reads them back from the log instead of computing them again:

- a step's cache key holds the *pinned* tool version, so no completed step runs
  again because the pack changed;
- the remaining steps run with the pinned adapter when the installed pack still
  registers it (a pack keeps older adapters registered while it supports them);
- otherwise the run's upgrade policy decides: ``pinned`` (the default) stops
  the run with a ``VersionPinError`` that names each tool or image and both
  versions, before any step runs; ``upgrade`` goes on with what is installed and
  records the switch (``version_switch``) in the audit log. The sandbox image
  is used by its pinned digest while the engine has it; a missing one follows
  the same policy.

Like Temporal's pinned worker versioning, a run finishes on what it started on
unless someone decides otherwise for that run (or its deployment).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from pydantic import BaseModel, Field

from prefect_agentic.errors import AgenticError
from prefect_agentic.plan.models import Plan
from prefect_agentic.tools.registry import ToolRegistry

UpgradePolicy = Literal["pinned", "upgrade"]
DEFAULT_UPGRADE_POLICY: UpgradePolicy = "pinned"
NOT_INSTALLED = "not installed"


@lru_cache(maxsize=1)
def pack_version() -> str:
    """The installed prefect-agentic distribution's version (what a wheel says it is)."""
    try:
        return version("prefect-agentic")
    except PackageNotFoundError:  # imported from a source tree without an install
        from prefect_agentic import __version__

        return __version__


class RunPins(BaseModel):
    """The versions a run started with (recorded in ``run_started`` under ``pins``)."""

    pack: str = Field(description="prefect-agentic version of the process that started the run.")
    plan_schema: int = Field(default=1, description="Schema version of the plan the run executes.")
    planner: dict[str, Any] | None = Field(default=None, description="The plan's planner (name, version).")
    tools: dict[str, str] = Field(default_factory=dict, description="Tool name -> adapter version.")
    image: str = Field(default="", description="The sandbox image as configured (a tag).")
    image_id: str | None = Field(default=None, description="The image's content digest (Docker image id).")
    image_digests: list[str] = Field(default_factory=list, description="Registry digests of the image, if any.")


class VersionSwitch(BaseModel):
    """One pinned version the installed pack or engine no longer has."""

    kind: Literal["tool", "image"]
    name: str
    pinned: str
    installed: str

    def text(self) -> str:
        what = f"tool '{self.name}'" if self.kind == "tool" else f"sandbox image '{self.name}'"
        return f"{what}: pinned {self.pinned}, installed {self.installed}"


class VersionPinError(AgenticError):
    """A resumed run's pinned versions are gone and its upgrade policy says stop (or nothing can replace them)."""

    def __init__(self, switches: list[VersionSwitch], policy: UpgradePolicy, pack: str) -> None:
        self.switches = switches
        self.policy = policy
        listed = "; ".join(s.text() for s in switches)
        if policy == "pinned":
            then = ("the run stops under its upgrade policy 'pinned' before any further step (completed "
                    "steps are kept): resume it on a worker whose pack still has the pinned versions, or "
                    "run it again with the upgrade policy 'upgrade' (`on_upgrade: upgrade`) to go on "
                    "with the installed ones")
        else:
            then = "nothing installed can take their place, so the run cannot go on on this worker"
        super().__init__(f"this run was pinned to versions this worker (prefect-agentic {pack}) does not "
                         f"have ({listed}); {then}")


class PinResolution(BaseModel):
    """What a (resumed) run uses: its pins, the tool versions and image it runs with, and what switched."""

    pins: RunPins
    tool_versions: dict[str, str]
    image_id: str | None
    switches: list[VersionSwitch] = Field(default_factory=list)


def pins_for_new_run(plan: Plan, registry: ToolRegistry, image: str, image_id: str | None,
                     image_digests: list[str] | None = None) -> RunPins:
    """The pins of a run that starts now: what is installed."""
    return RunPins(
        pack=pack_version(), plan_schema=plan.schema_version,
        planner=plan.planner.model_dump(mode="json", include={"name", "version"}) if plan.planner else None,
        tools={step.tool: registry.get(step.tool).version for step in plan.steps},
        image=image, image_id=image_id, image_digests=list(image_digests or []),
    )


def pin_new_tools(run_pins: RunPins, plan: Plan, registry: ToolRegistry) -> dict[str, str]:
    """Pin (in place) the installed version of each tool ``plan`` uses that ``run_pins`` lacks.

    A plan revision can bring tools the run did not start with; pinning them when
    the revision is accepted (and recording it with the revision) makes them
    behave on resume as the tools pinned at the start do. Returns what was added.
    """
    added = {step.tool: registry.get(step.tool).version for step in plan.steps if step.tool not in run_pins.tools}
    run_pins.tools.update(added)
    return added


def pins_with_revisions(pins: RunPins, plan_records: list[Mapping[str, Any]]) -> RunPins:
    """``pins`` plus the tools pinned by the run's accepted plan revisions (``plan`` records' ``pins``)."""
    tools = dict(pins.tools)
    for data in plan_records:
        tools.update({str(k): str(v) for k, v in (data.get("pins") or {}).items() if k not in tools})
    return pins.model_copy(update={"tools": tools})


def pins_from_run_started(data: Mapping[str, Any]) -> RunPins:
    """The pins a ``run_started`` record holds.

    Records written before pins existed carry the same facts in other fields
    (``prefect_agentic``, ``tools``, ``image``, ``image_id``, ``planner``): read those.
    """
    if isinstance(data.get("pins"), Mapping):
        return RunPins.model_validate(data["pins"])
    planner = data.get("planner")
    return RunPins(
        pack=str(data.get("prefect_agentic") or "unknown"), plan_schema=1,
        planner={k: planner[k] for k in ("name", "version") if k in planner} if isinstance(planner, Mapping) else None,
        tools={str(k): str(v) for k, v in (data.get("tools") or {}).items()},
        image=str(data.get("image") or ""), image_id=data.get("image_id"),
    )


def resolve_pins(pins: RunPins, registry: ToolRegistry, policy: UpgradePolicy,
                 image_exists: Callable[[str], bool], current_image_id: Callable[[], str | None]) -> PinResolution:
    """What a resumed run runs with under ``policy``; ``VersionPinError`` when it must stop.

    ``image_exists(id)`` says whether the engine still has the pinned image;
    ``current_image_id()`` is what the configured image (tag) is now.
    """
    switches = tool_switches(pins, registry)
    image_id = pins.image_id
    if pins.image_id and not image_exists(pins.image_id):
        image_id = current_image_id()
        switches.append(VersionSwitch(kind="image", name=pins.image, pinned=pins.image_id,
                                      installed=image_id or NOT_INSTALLED))
    if switches and (policy == "pinned" or any(s.installed == NOT_INSTALLED for s in switches)):
        raise VersionPinError(switches, policy, pack_version())
    versions = dict(pins.tools)
    versions.update({s.name: s.installed for s in switches if s.kind == "tool"})
    return PinResolution(pins=pins, tool_versions=versions, image_id=image_id, switches=switches)


def tool_switches(pins: RunPins, registry: ToolRegistry) -> list[VersionSwitch]:
    """The pinned tool versions ``registry`` does not have, with what it has instead."""
    switches = []
    for name, pinned in sorted(pins.tools.items()):
        if not registry.has(name, pinned):
            installed = registry.get(name).version if name in registry else NOT_INSTALLED
            switches.append(VersionSwitch(kind="tool", name=name, pinned=pinned, installed=installed))
    return switches


def switched_versions(pins: RunPins | None, tool_versions: Mapping[str, str], image_id: str | None) -> str:
    """What a run runs with that differs from its pins, for an approver (empty: nothing switched)."""
    if pins is None:
        return ""
    changed = [f"tool `{name}` {pinned} → {tool_versions[name]}" for name, pinned in sorted(pins.tools.items())
               if tool_versions.get(name, pinned) != pinned]
    if pins.image_id and image_id and image_id != pins.image_id:
        changed.append(f"sandbox image `{pins.image}` {pins.image_id[:19]} → {image_id[:19]}")
    if not changed:
        return ""
    return "; ".join(changed) + " (the run went on with the installed versions under its upgrade policy `upgrade`)"
