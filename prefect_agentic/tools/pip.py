"""The ``pip`` tool: pin a dependency and install requirements from a wheelhouse, offline.

Containers have no network, so packages come from a wheelhouse: a host
directory of wheels that the sandbox settings mount read-only at
``/wheelhouse`` (``SandboxSettings.wheelhouse``), or a directory in the
workspace. Installs go into a fresh virtual environment in the container's
``/tmp`` that sees the image's packages (pytest, coverage) underneath, so no
state survives the command: a later step that needs the environment builds it
again from the same files (``pytest`` with ``requirements``), which keeps
cached results honest.
"""

from __future__ import annotations

import json
import re
import shlex
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import Field, field_validator, model_validator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.errors import ToolError, WorkspaceBoundaryError
from prefect_agentic.sandbox.runner import WHEELHOUSE_MOUNT
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput

VENV = "/tmp/agentic-venv"
INSTALL_FAILED_EXIT = 97
"""Exit code of a command whose requirements did not install (distinct from the tool's own)."""

_COMMENT = re.compile(r"\s+#")
_QUOTED = re.compile(r"""(?P<q>["'])(?P<req>[A-Za-z0-9][^"'\n]*)(?P=q)""")


class PipInput(ToolInput):
    op: Literal["pin", "install"] = Field(
        description="pin: set the package's requirement to ==version in the files; "
        "install: install the requirement files from the wheelhouse into a fresh environment."
    )
    package: str | None = Field(default=None, description="The dependency (pin: required).")
    version: str | None = Field(
        default=None, description="pin: the new version; install: the version that must end up installed."
    )
    files: list[str] = Field(
        default_factory=lambda: ["requirements.txt"], min_length=1,
        description="Requirement files (requirements*.txt, pyproject.toml), workspace-relative.",
    )
    wheelhouse: str = Field(default=WHEELHOUSE_MOUNT, description="Directory of wheels in the sandbox.")

    @field_validator("files")
    @classmethod
    def _relative(cls, files: list[str]) -> list[str]:
        for name in files:
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"'{name}' must be a workspace-relative path without '..'")
        return files

    @model_validator(mode="after")
    def _needs(self) -> PipInput:
        if self.op == "pin" and not (self.package and self.version):
            raise ValueError("op 'pin' needs a package and a version")
        if self.version is not None:
            try:
                Version(self.version)
            except InvalidVersion:
                raise ValueError(f"'{self.version}' is not a version") from None
        return self


class PipOutput(ToolOutput):
    pinned: dict[str, str] = Field(default_factory=dict, description="pin: file → the requirement it had.")
    installed: dict[str, str] = Field(
        default_factory=dict, description="install: distributions installed from the wheelhouse → version."
    )
    headline: str = ""


class PipTool(Tool):
    """Pin a dependency in requirement files, or install them offline from a wheelhouse."""

    name: ClassVar[str] = "pip"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "pin a dependency in requirement files; install them from a wheelhouse."
    Input: ClassVar[type[ToolInput]] = PipInput
    Output: ClassVar[type[ToolOutput]] = PipOutput

    @classmethod
    def changes_files(cls, args: ToolInput) -> bool:
        return isinstance(args, PipInput) and args.op == "pin"

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        assert isinstance(args, PipInput)
        return args.op

    def run(self, args: PipInput, ctx: ToolContext) -> Mapping[str, Any]:
        if args.op == "pin":
            return self._pin(args, ctx.files)
        return self._install(args, ctx)

    @staticmethod
    def _pin(args: PipInput, files: WorkspaceFiles) -> Mapping[str, Any]:
        assert args.package and args.version
        pinned = {}
        for name in args.files:
            found = files.lstat(name)
            if found is None or not stat.S_ISREG(found.st_mode):
                raise ToolError(f"pip pin: requirement file '{name}' is not in the workspace"
                                + ("" if found is None else " (not a regular file; links are never followed)"))
            text, old = pin_requirement(files.read_text(name), args.package, args.version,
                                        quoted=name.endswith(".toml"))
            if old:
                files.write_text(name, text, owner=(found.st_uid, found.st_gid))
                pinned[name] = ", ".join(old)
        if not pinned:
            raise ToolError(f"pip pin: no requirement on '{args.package}' in {args.files}")
        return {"exit_code": 0, "pinned": pinned, "log": "\n".join(f"{f}: {r}" for f, r in pinned.items()),
                "headline": f"pinned {args.package}=={args.version} in {len(pinned)} file(s) "
                            f"(was {'; '.join(sorted(set(pinned.values())))})"}

    @staticmethod
    def _install(args: PipInput, ctx: ToolContext) -> Mapping[str, Any]:
        listing = f"{VENV}/bin/python -m pip list --local --format=json --disable-pip-version-check"
        script = install_script(ctx.files, args.files, args.wheelhouse)
        result = ctx.run(["sh", "-c", f"{script} && {listing}"])
        if result.exit_code != 0:
            raise ToolError(install_failure(args.files, args.wheelhouse, result.exit_code,
                                            result.combined_tail()))
        try:
            lines = result.stdout.strip().splitlines()
            installed = {str(p["name"]).lower(): str(p["version"]) for p in json.loads(lines[-1])}
        except (IndexError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ToolError(f"pip list printed no package list ({exc}):\n{result.combined_tail()}") from None
        if args.package and args.version:
            found = installed.get(canonicalize_name(args.package))
            if found != args.version:
                raise ToolError(f"{args.package} {found or 'is not'} installed, expected {args.version}")
        return {"exit_code": 0, "installed": installed, "log": result.combined_tail(),
                "headline": "installed " + ", ".join(f"{n} {v}" for n, v in sorted(installed.items()))}


def install_script(workspace: WorkspaceFiles, names: Sequence[str], wheelhouse: str) -> str:
    """Shell commands that make ``VENV`` and install ``files`` into it from ``wheelhouse`` only.

    The environment sees the image's own packages (``--system-site-packages``)
    and uses the image's pip, so making it takes a fraction of a second; what
    it installs wins over the image's copies. A failure exits with
    ``INSTALL_FAILED_EXIT``.
    """
    requirements = shlex.join(requirement_args(workspace, names))
    return (f"{{ python3 -m venv --without-pip --system-site-packages {VENV} && "
            f"{VENV}/bin/python -m pip install --quiet --no-index --no-cache-dir "
            f"--disable-pip-version-check --find-links {shlex.quote(wheelhouse)} {requirements}; }} "
            f"|| exit {INSTALL_FAILED_EXIT}")


def install_failure(files: Sequence[str], wheelhouse: str, exit_code: int, log: str) -> str:
    """Why an install failed, with a hint when the wheelhouse is not there at all."""
    hint = ""
    if f"Location '{wheelhouse}' is ignored" in log:
        hint = (f"; there is no wheelhouse at {wheelhouse} in the sandbox"
                + (" (set SandboxSettings.wheelhouse to a host directory of wheels)"
                   if wheelhouse == WHEELHOUSE_MOUNT else ""))
    return f"installing {list(files)} from {wheelhouse} failed (exit code {exit_code}){hint}:\n{log}"


def requirement_args(files: WorkspaceFiles, names: Sequence[str]) -> list[str]:
    """pip arguments installing ``names``: ``-r`` for requirement files, the
    ``[project] dependencies`` of a pyproject.toml (pip cannot read those itself)."""
    args: list[str] = []
    for name in names:
        if not files.is_file(name):
            raise ToolError(f"requirement file '{name}' is not in the workspace (or not a regular file)")
        if not name.endswith(".toml"):
            args += ["-r", name]
            continue
        try:
            text = files.read_text(name, limit=4 * 1024 * 1024)
            args += [str(d) for d in tomllib.loads(text).get("project", {}).get("dependencies", [])]
        except (tomllib.TOMLDecodeError, AttributeError, RecursionError, WorkspaceBoundaryError) as exc:
            raise ToolError(f"cannot read the dependencies of '{name}': {exc}") from None
    return args


def pin_requirement(text: str, package: str, version: str, *, quoted: bool) -> tuple[str, list[str]]:
    """``text`` with every requirement on ``package`` set to ``==version``, and the old ones.

    Plain files (requirements.txt) hold one requirement per line; in
    ``quoted`` files (pyproject.toml) requirements are quoted strings. Extras
    and markers are kept, comments too.
    """
    wanted = canonicalize_name(package)
    old: list[str] = []

    def repin(spec: str) -> str | None:
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            return None
        if canonicalize_name(req.name) != wanted:
            return None
        old.append(spec.strip())
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        marker = f"; {req.marker}" if req.marker else ""
        return f"{req.name}{extras}=={version}{marker}"

    if quoted:
        def swap(match: re.Match[str]) -> str:
            new = repin(match["req"])
            return match.group(0) if new is None else f"{match['q']}{new}{match['q']}"
        return _QUOTED.sub(swap, text), old
    lines = []
    for line in text.splitlines(keepends=True):
        comment = _COMMENT.search(line)
        cut = comment.start() if comment else len(line.rstrip("\n"))
        body, tail = line[:cut], line[cut:]
        new = None if body.lstrip().startswith(("-", "#")) else repin(body)
        lines.append(line if new is None else f"{new}{tail}")
    return "".join(lines), old
