"""The pre-upgrade check: which in-flight runs a new pack would stop under their upgrade policy.

In-flight runs are flow runs of ``run-plan`` that a worker will start again:
paused or suspended at an approval gate, or scheduled for a retry
(``AwaitingRetry``). For each, the versions it pinned are read from its audit
log (``run_started``) and compared with a target pack's tools: the installed
pack, or another pack given as a wheel or source directory (its tool registry
is read by importing it in a separate interpreter, so nothing is installed).
The pinned sandbox image is looked up on this host's Docker engine when it
answers. A run would *stop* when something it pinned is gone and its policy
is ``pinned`` (or nothing can replace it); it would *switch* under ``upgrade``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from pydantic import BaseModel, Field

from prefect_agentic.errors import AgenticError, AuditError
from prefect_agentic.pins import (
    DEFAULT_UPGRADE_POLICY,
    NOT_INSTALLED,
    RunPins,
    VersionSwitch,
    pack_version,
    pins_from_run_started,
)
from prefect_agentic.record.audit import parse_log
from prefect_agentic.record.store import AuditStore
from prefect_agentic.tools.registry import default_registry

FLOW_NAMES = ("run-plan",)
RETRY_STATES = ("AwaitingRetry",)


class UpgradeCheckError(AgenticError):
    """The target pack cannot be read."""


class TargetPack(BaseModel):
    """What a run is checked against: a pack version and the tool versions it registers."""

    version: str
    tools: dict[str, list[str]]
    where: str = "installed"


class InFlightRun(BaseModel):
    """One in-flight run, what it pinned, and what the target pack would do with it."""

    flow_run_id: str
    name: str
    state: str
    policy: str
    pins: RunPins | None = None
    switches: list[VersionSwitch] = Field(default_factory=list)
    verdict: Literal["continues", "switches", "stops", "unknown"] = "unknown"
    note: str = ""


def installed_pack() -> TargetPack:
    registry = default_registry()
    return TargetPack(version=pack_version(), tools={name: registry.versions(name) for name in registry.names()})


_READ_TOOLS = """
import json, sys
sys.path.insert(0, sys.argv[1])
import prefect_agentic.tools.registry as r
registry = r.default_registry()
versions = getattr(registry, "versions", None)
print(json.dumps({t.name: versions(t.name) if versions else [t.version] for t in registry}))
"""


def pack_at(path: Path) -> TargetPack:
    """The tools of the pack in ``path`` (a wheel, or a directory holding ``prefect_agentic``)."""
    if not path.exists():
        raise UpgradeCheckError(f"--tools-from {path}: no such file or directory")
    with tempfile.TemporaryDirectory(prefix="agentic-upgrade-check-") as unpacked:
        where = path.resolve()
        if path.is_file():  # a wheel is a zip file; unpacked, as the pack reads files next to its modules
            if not zipfile.is_zipfile(path):
                raise UpgradeCheckError(f"--tools-from {path}: neither a wheel nor a directory")
            with zipfile.ZipFile(path) as wheel:
                wheel.extractall(unpacked)  # member names are made safe (no absolute paths, no ..)
            where = Path(unpacked)
        read = subprocess.run([sys.executable, "-c", _READ_TOOLS, str(where)], capture_output=True,
                              text=True, timeout=120, check=False)
    if read.returncode != 0:
        last = (read.stderr.strip().splitlines() or ["no output"])[-1]
        raise UpgradeCheckError(f"--tools-from {path}: cannot read its tools: {last}")
    return TargetPack(version=_version_of(path), tools=json.loads(read.stdout), where=str(path))


def _version_of(path: Path) -> str:
    """The version a wheel's METADATA (or a source tree's pyproject.toml) states."""
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            name = next((n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = wheel.read(name).decode() if name else ""
    else:
        pyproject = path / "pyproject.toml" if path.is_dir() else path
        text = pyproject.read_text() if pyproject.is_file() else ""
    for line in text.splitlines():
        if line.startswith(("Version:", "version =")):
            return line.split(":" if line.startswith("Version:") else "=", 1)[1].strip().strip('"')
    return "unknown"


def in_flight_runs(store: AuditStore, target: TargetPack,
                   image_exists: Callable[[str], bool | None] | None = None) -> list[InFlightRun]:
    """Every in-flight ``run-plan`` flow run on the configured Prefect API, checked against ``target``.

    ``image_exists(id)`` says whether the pinned image is on the engine (None: cannot tell).
    """
    flows = FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES)))
    found: dict[str, Any] = {}
    with get_client(sync_client=True) as client:
        for state in (FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
                      FlowRunFilterState(name=FlowRunFilterStateName(any_=list(RETRY_STATES)))):
            for flow_run in client.read_flow_runs(flow_filter=flows, flow_run_filter=FlowRunFilter(state=state)):
                found[str(flow_run.id)] = flow_run
    return [check_run(run, store, target, image_exists)
            for run in sorted(found.values(), key=lambda r: r.created or 0)]


def check_run(flow_run: Any, store: AuditStore, target: TargetPack,
              image_exists: Callable[[str], bool | None] | None) -> InFlightRun:
    policy = str((flow_run.parameters or {}).get("on_upgrade") or DEFAULT_UPGRADE_POLICY)
    checked = InFlightRun(flow_run_id=str(flow_run.id), name=flow_run.name,
                          state=flow_run.state.name if flow_run.state else "?", policy=policy)
    try:
        records = parse_log(store.read_log(checked.flow_run_id))
    except AuditError as exc:
        checked.note = f"pins unknown: {exc}"
        return checked
    if not records or records[0].kind != "run_started":
        checked.note = "pins unknown: its audit log does not start with run_started"
        return checked
    checked.pins = pins = pins_from_run_started(records[0].data)
    checked.switches = switches_against(pins, target)
    if pins.image_id and image_exists is not None:
        present = image_exists(pins.image_id)
        if present is False:
            checked.switches.append(VersionSwitch(kind="image", name=pins.image, pinned=pins.image_id,
                                                  installed="missing on this engine"))
        elif present is None:
            checked.note = "image not checked: no Docker engine answered here"
    if not checked.switches:
        checked.verdict = "continues"
    elif policy == "upgrade" and all(s.installed != NOT_INSTALLED for s in checked.switches):
        checked.verdict = "switches"
    else:
        checked.verdict = "stops"
    return checked


def switches_against(pins: RunPins, target: TargetPack) -> list[VersionSwitch]:
    """The pinned tool versions ``target`` lacks, with the version it would run instead."""
    switches = []
    for name, pinned in sorted(pins.tools.items()):
        versions = target.tools.get(name, [])
        if pinned not in versions:
            switches.append(VersionSwitch(kind="tool", name=name, pinned=pinned,
                                          installed=versions[-1] if versions else NOT_INSTALLED))
    return switches
