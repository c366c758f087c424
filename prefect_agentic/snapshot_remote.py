"""The snapshot remote: where run workspaces travel between machines as git objects.

A step that runs on a task worker (``tasks/remote_step.py``) starts from a
snapshot the worker may not hold, and its output snapshot must outlive the
worker. Both go through a bare repository every worker can reach (a path on a
shared mount, here; ``AGENTIC_SNAPSHOT_REMOTE``). Each snapshot is pushed
under a content ref (``refs/agentic/objects/<sha>``, what workers fetch) and
a name a person can read (``refs/agentic/runs/<run>/<step>``).

All git runs through ``workspace.run_git`` (no hooks, no user or system
config, no ``ext::`` transport); pushes and fetches move objects between
host-owned ``.git`` directories and never look at the worktree, so nothing a
step wrote there (hook scripts, a ``.gitattributes`` naming a filter, a
config file) is obeyed. Only an absolute local path is accepted as the remote:
a URL from a setting never reaches git as an option or a transport command.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import git

from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.errors import SnapshotMissingError, WorkspaceError
from prefect_agentic.workspace import run_git

OBJECT_REF_PREFIX = "refs/agentic/objects"
RUN_REF_PREFIX = "refs/agentic/runs"
_EPOCH_FILE = "agentic-epoch"
_SHA = re.compile(r"[0-9a-f]{40}")
_REF_PART = re.compile(r"[A-Za-z0-9._-]+")
_GIT_TIMEOUT_S = 300.0


class SnapshotRemoteError(WorkspaceError):
    """The snapshot remote is misconfigured or refused a push or fetch."""


@dataclass(frozen=True)
class SnapshotRemote:
    """A bare repository (an absolute path) holding the snapshots of runs whose steps move."""

    path: Path

    @classmethod
    def parse(cls, text: str) -> SnapshotRemote:
        """``/abs/path`` or ``file:///abs/path``; anything else is refused with the reason."""
        raw = text.strip()
        if raw.startswith("file://"):
            raw = raw.removeprefix("file://")
        if not raw.startswith("/") or "\0" in raw or "::" in raw:
            raise SnapshotRemoteError(
                f"snapshot remote {text!r} must be an absolute path (or file:///path) of a bare git "
                "repository that every task worker can reach")
        return cls(Path(raw))

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def ensure(self) -> SnapshotRemote:
        """Create the bare repository if it is not there yet (idempotent)."""
        if not (self.path / "HEAD").is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            run_git(self.path.parent, "init", "--quiet", "--bare", str(self.path))
        return self

    def epoch(self) -> str:
        """A random id made with the remote: cache keys of steps whose snapshots live here hold it.

        A recreated remote gets a new one, so no cached step points at a snapshot it lost.
        """
        files = WorkspaceFiles(self.ensure().path)
        found = files.read_optional(_EPOCH_FILE, limit=1024)
        if found is None or not found.strip():
            files.write_text(_EPOCH_FILE, uuid.uuid4().hex + "\n")
            found = files.read_bytes(_EPOCH_FILE, limit=1024)
        return "remote-" + found.decode().strip()

    def has(self, sha: str) -> bool:
        try:
            run_git(self.path, "cat-file", "-e", f"{_checked_sha(sha)}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def push(self, workspace: Path, sha: str, *names: str) -> None:
        """Push snapshot ``sha`` from the run workspace at ``workspace`` (content ref plus ``names``)."""
        sha = _checked_sha(sha)
        refspecs = [f"{sha}:{OBJECT_REF_PREFIX}/{sha}"]
        refspecs += [f"+{sha}:{RUN_REF_PREFIX}/{_checked_ref(name)}" for name in names]
        try:
            run_git(workspace, "push", "--quiet", "--no-verify", "--", self.url, *refspecs,
                    timeout=_GIT_TIMEOUT_S)
        except git.GitCommandError as exc:
            raise SnapshotRemoteError(f"cannot push snapshot {sha[:12]} to {self.path}: "
                                      f"{_stderr(exc)}") from None

    def fetch(self, workspace: Path, sha: str) -> None:
        """Fetch snapshot ``sha`` into the run workspace at ``workspace``."""
        sha = _checked_sha(sha)
        if not self.has(sha):
            raise SnapshotMissingError(
                f"snapshot {sha[:12]} is not in the snapshot remote {self.path}; it was made on a "
                "worker that did not push it (or the remote was replaced). Re-run with --fresh.")
        try:
            run_git(workspace, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", self.url,
                    f"{OBJECT_REF_PREFIX}/{sha}:{OBJECT_REF_PREFIX}/{sha}", timeout=_GIT_TIMEOUT_S)
        except git.GitCommandError as exc:
            raise SnapshotRemoteError(f"cannot fetch snapshot {sha[:12]} from {self.path}: "
                                      f"{_stderr(exc)}") from None


def run_ref(run_key: str, name: str) -> str:
    """The readable ref name of a run's snapshot (``<run>/<step>``, or ``<run>/base``)."""
    return f"{run_key}/{name}"


def _checked_sha(sha: str) -> str:
    if not _SHA.fullmatch(sha):
        raise SnapshotRemoteError(f"{sha!r} is not a snapshot id (40 hex digits)")
    return sha


def _checked_ref(name: str) -> str:
    parts = name.split("/")
    if not all(_REF_PART.fullmatch(p) and not p.startswith(".") and not p.endswith(".lock") for p in parts):
        raise SnapshotRemoteError(f"{name!r} cannot name a snapshot ref")
    return name


def _stderr(exc: git.GitCommandError) -> str:
    return str(exc.stderr or exc).strip()
