"""The run workspace: a private clone of the target repository with snapshots.

Each run works in its own clone (the user's repository, branches and working
tree are only read). A step starts from a snapshot (a commit) and, if it
writes the workspace, ends by committing the worktree into a new snapshot.
Snapshot commits are deterministic (fixed identity, the parent's timestamp),
so the same step on the same snapshot always yields the same commit id; that
is what makes a resumed run end on exactly the snapshot of an uninterrupted
one.

Host-side git never runs hooks, fsmonitor commands or user/system config:
the worktree is written by untrusted commands, and git must not obey them.
The repository's own ``.git`` is host-owned (mounted read-only in sandboxes)
and defines no filter, diff or merge drivers, so the worktree's
``.gitattributes`` can name none that exists. A worktree holding an *embedded*
repository (a ``.git`` below the top) is refused before any git command
touches it: git would run inside it and obey its configuration. File names of
any bytes are handled (``-z`` output, undecodable bytes shown escaped).
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git
from pydantic import BaseModel, Field

from prefect_agentic.boundary import WorkspaceFiles, shown
from prefect_agentic.errors import (
    SnapshotMissingError,
    WorkspaceBoundaryError,
    WorkspaceError,
    WorkspaceSizeLimitError,
)
from prefect_agentic.settings import agentic_home

AGENTIC_DIR = ".agentic"
"""Directory inside the workspace for reports; excluded from snapshots."""

WORKTREE_PATHSPEC = ("--", ".", f":(top,exclude){AGENTIC_DIR}")
"""The pathspec of host ``git status``: ``.agentic`` is left out even where a ``.gitignore``
the step wrote re-includes it (``.git/info/exclude`` ranks below the worktree's files)."""

SNAPSHOT_REF_PREFIX = "refs/agentic/snapshots"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "prefect-agentic",
    "GIT_AUTHOR_EMAIL": "agentic@prefect-agentic.invalid",
    "GIT_COMMITTER_NAME": "prefect-agentic",
    "GIT_COMMITTER_EMAIL": "agentic@prefect-agentic.invalid",
}
_HARDENED = [
    "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.autocrlf=false",
    "-c", "core.attributesFile=/dev/null", "-c", "core.untrackedCache=false",
    "-c", "submodule.recurse=false", "-c", "diff.ignoreSubmodules=all", "-c", "status.submoduleSummary=false",
    "-c", "core.quotePath=true", "-c", "protocol.ext.allow=never",
]
NEUTRAL_ATTRIBUTES = "* !text !eol !crlf !ident !filter !diff !working-tree-encoding\n"
"""``.git/info/attributes`` of every workspace: it outranks any ``.gitattributes`` a step
writes, so host git stores the bytes the step wrote (no conversion, re-encoding or
filter) and shows every change it stored (no ``-diff`` hiding a file from the audit)."""
_ISOLATED_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
                 "GIT_ATTR_NOSYSTEM": "1", "GIT_NO_REPLACE_OBJECTS": "1", "GIT_NO_LAZY_FETCH": "1"}


class FileChange(BaseModel):
    path: str
    added: int
    deleted: int
    binary: bool = False


class ChangeSummary(BaseModel):
    """What changed between two snapshots (a diff stat)."""

    files: list[FileChange] = Field(default_factory=list)

    @property
    def lines_changed(self) -> int:
        return sum(f.added + f.deleted for f in self.files)

    def touches(self, pattern: str) -> list[str]:
        """Changed paths matching a glob (``*`` also matches ``/``; ``dir/`` = all below)."""
        if pattern.endswith("/"):
            return [f.path for f in self.files if f.path.startswith(pattern)]
        return [f.path for f in self.files if fnmatch.fnmatchcase(f.path, pattern)]

    def stat_line(self) -> str:
        added = sum(f.added for f in self.files)
        deleted = sum(f.deleted for f in self.files)
        return f"{len(self.files)} files, +{added} -{deleted}"


def run_key(plan_id: str, source: Path, base: str) -> str:
    """Identity of a run: the same plan on the same repository and base commit."""
    digest = hashlib.sha256(f"{plan_id}\0{source.resolve()}\0{base}".encode()).hexdigest()
    return f"{plan_id}-{digest[:12]}"


def run_workspace(key: str) -> Path:
    """Where the workspace of the runs with run key ``key`` lives (made by the first of them)."""
    return agentic_home() / "workspaces" / key


def clone_at(source: Path, commit: str, into: Path) -> None:
    """Make ``into`` a bare clone of ``source`` whose HEAD is ``commit``.

    A repository of its own: the run key includes the repository's path, so runs on the
    clone get a workspace (and a step-cache epoch) of their own, apart from the runs on
    ``source``. It holds the same branches, tags and commits; a local clone hard-links
    the objects, so a large repository costs little. ``commit`` is fetched as well, in
    case no branch or tag of ``source`` holds it.
    """
    origin = str(source.resolve())
    try:
        run_git(into.parent, "clone", "--bare", "--quiet", origin, str(into))
        run_git(into, "fetch", "--quiet", origin, commit)
        run_git(into, "update-ref", "--no-deref", "HEAD", commit)
    except git.GitCommandError as exc:
        raise WorkspaceError(f"cannot clone {source} at {commit[:12]} into {into}: "
                             f"{shown(str(exc.stderr).strip()[:300])}") from None


def resolve_base(source: Path, ref: str) -> str:
    """The commit ``ref`` names in the user's repository (read-only)."""
    try:
        return git.Repo(source).commit(ref).hexsha
    except git.InvalidGitRepositoryError:
        raise WorkspaceError(f"{source} is not a git repository") from None
    except git.NoSuchPathError:
        raise WorkspaceError(f"repository path {source} does not exist") from None
    except (git.BadName, ValueError):
        raise WorkspaceError(f"'{ref}' names no commit in {source}") from None


def run_git(path: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float | None = None) -> str:
    """Run git in ``path`` without hooks, fsmonitor, attributes files, or user and system config.

    Output is decoded as UTF-8 with undecodable bytes shown as ``\\xNN`` escapes
    (file names and contents in the workspace may be any bytes).
    ``timeout``: kill git after this many seconds (for commands that talk to a remote).
    """
    return run_git_bytes(path, *args, env=env, timeout=timeout).decode("utf-8", errors="backslashreplace")


def run_git_bytes(path: Path, *args: str, env: dict[str, str] | None = None,
                  timeout: float | None = None) -> bytes:
    """``run_git`` without decoding (for ``-z`` output of file names)."""
    out = git.Git(str(path)).execute(
        ["git", *_HARDENED, *args], env={**os.environ, **_ISOLATED_ENV, **(env or {})},
        kill_after_timeout=timeout, stdout_as_string=False,
    )
    return out if isinstance(out, bytes) else str(out).encode()


def embedded_repositories(path: Path, limit: int = 5) -> list[str]:
    """Paths (escaped) of ``.git`` entries below the top of worktree ``path``.

    Git run on the host would enter such an embedded repository and obey its
    configuration (filters, fsmonitor, ...), so none may be present when host
    git touches the worktree. The top ``.git`` is not searched, nor ``.agentic`` (where reports
    pile up over a run) unless the top ``.gitignore`` may re-include it: only then does git enter it.
    """
    found: list[str] = []
    skip = (".git",) if _reincludes(path) else (".git", AGENTIC_DIR)
    for here, dirs, files in WorkspaceFiles(path).walk(skip_top=skip):
        for name in [*dirs, *files]:
            if name == ".git" and here:
                found.append(shown(f"{here}/{name}"))
        dirs[:] = [d for d in dirs if d != ".git"]
        if len(found) >= limit:
            break
    return found


def stage_worktree(path: Path, *options: str) -> None:
    """``git add --all`` of worktree ``path``, never staging ``.agentic``.

    ``.git/info/exclude`` keeps ``.agentic`` out until the top ``.gitignore`` re-includes
    it with a ``!`` line (only that file can: git never reads one inside an excluded
    directory); then whatever of it was staged is taken out again. An excluding
    pathspec would do it in one call, but ``git add`` refuses one that names an ignored
    directory.
    """
    run_git(path, "add", "--all", *options)
    if _reincludes(path):
        run_git(path, "rm", "-r", "--cached", "-q", "--ignore-unmatch", "--", f":(top){AGENTIC_DIR}")


def _reincludes(path: Path) -> bool:
    """Whether the worktree's top ``.gitignore`` may have a negation line (when it cannot
    be read here, e.g. a link or over the read cap, assume it has: the check costs little)."""
    files = WorkspaceFiles(path)
    try:
        text = files.read_bytes(".gitignore")
    except FileNotFoundError:
        return False
    except (OSError, WorkspaceBoundaryError):
        return True
    return any(line.lstrip().startswith(b"!") for line in text.splitlines())


def refuse_embedded_repositories(path: Path) -> None:
    """Raise ``WorkspaceBoundaryError`` naming any embedded repository in worktree ``path``."""
    found = embedded_repositories(path)
    if found:
        raise WorkspaceBoundaryError(
            f"the workspace holds an embedded git repository at {', '.join(repr(f) for f in found)}; "
            "host git never enters one (it would obey that repository's configuration). "
            "Remove its .git directory in the step (or clone it outside /workspace, e.g. in /tmp)"
        )


def commit_identity(parent_date: str) -> dict[str, str]:
    """Environment for a deterministic commit: our identity, the parent's timestamp."""
    return {**_IDENTITY, "GIT_AUTHOR_DATE": parent_date, "GIT_COMMITTER_DATE": parent_date}


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
WORKSPACE_FULL_BYTES = 1024 * 1024
"""Free space under which a size-limited workspace counts as full after a step."""


def parse_size(text: str) -> int:
    """Bytes of a Docker-style size (``512m``, ``8g``)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*", text.lower())
    if not match:
        raise ValueError(f"'{text}' is not a size (use e.g. 512m or 8g)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def size_image(path: Path) -> Path:
    """The file holding the size-limited filesystem of the worktree at ``path``."""
    return path.parent / ".images" / f"{path.name}.img"


def mount_size_limited(path: Path, limit: str) -> None:
    """Make ``path`` a filesystem of ``limit`` (``8g``): a sparse ext4 image, loop-mounted.

    The system enforces the limit (a write past it fails with ENOSPC), and the
    host disk never holds more than the image for this workspace. The image
    outlives the mount, so a later run (a resume) mounts the same workspace again.
    Raises ``WorkspaceSizeLimitError`` when the limit cannot be in force (not root,
    no mount permission in a container, no ``mkfs.ext4``, an unlimited workspace
    already there): a workspace without the limit asked for would let a step fill
    the host disk, so nothing may go on without it.
    """
    if os.path.ismount(path):
        return
    size = parse_size(limit)
    if os.getuid() != 0:
        raise WorkspaceSizeLimitError(path, limit, f"mounting a size-limited filesystem needs root, and this "
                                                   f"process runs as uid {os.getuid()}")
    image = size_image(path)
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise WorkspaceSizeLimitError(path, limit, "the directory already holds a workspace made without a size "
                                                   "limit (remove it to make the workspace again with the limit)")
    image.parent.mkdir(parents=True, exist_ok=True)
    made = not image.exists()
    try:
        if made:
            partial = image.with_suffix(".partial")
            with open(partial, "wb") as handle:
                handle.truncate(size)
            # Lazy init: only metadata in use is written, so an 8g image costs ~4 MB of disk, not ~70 MB.
            _system(["mkfs.ext4", "-q", "-F", "-m", "0",
                     "-E", "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1", str(partial)])
            partial.rename(image)
        _mount(image, path)
    except (OSError, subprocess.CalledProcessError) as exc:
        if made:  # e.g. no mount permission in a container: leave no image to mount over a clone later
            image.unlink(missing_ok=True)
            image.with_suffix(".partial").unlink(missing_ok=True)
        raise WorkspaceSizeLimitError(path, limit, f"making or mounting its filesystem failed ({_why(exc)})") from None
    lost = path / "lost+found"
    if lost.is_dir() and not (path / ".git").exists():
        lost.rmdir()


def _mount(image: Path, path: Path) -> None:
    # noinit_itable: the kernel never zeroes the unused inode tables in the background.
    _system(["mount", "-o", "loop,nosuid,nodev,noinit_itable", str(image), str(path)])


def unmount_size_limited(path: Path) -> str | None:
    """Unmount the size-limited filesystem at ``path``; its image stays for a later run.

    Every run unmounts its workspace when it ends (suspended at a gate too): a
    mount left behind holds a loop device until the host reboots, and a host
    has a few hundred. Returns None when nothing stays mounted, else why. A
    filesystem still in use is detached lazily (the kernel frees it once
    the last user is gone).
    """
    if not os.path.ismount(path):
        return None
    try:
        _system(["umount", str(path)])
    except (OSError, subprocess.CalledProcessError) as exc:
        try:
            _system(["umount", "--lazy", str(path)])
        except (OSError, subprocess.CalledProcessError):
            return f"cannot unmount workspace {path}: {_why(exc)}"
    return None


def remove_workspace(path: Path) -> str | None:
    """Remove the run workspace at ``path`` for good: worktree, snapshots, size image, lock file.

    For throwaway runs (a chaos campaign's): a workspace otherwise stays, for resumes and
    for the step cache, whose results point at its snapshots. It is unmounted first;
    returns None once it is gone, else why it could not be (it stays, mounted).
    """
    problem = unmount_size_limited(path)
    if problem is not None:
        return problem
    workspaces = WorkspaceFiles(path.parent)
    for name in (path.name, f"{path.name}.cloning", f"{path.name}.lock"):
        workspaces.remove_tree(name)
    size_image(path).unlink(missing_ok=True)
    return None


@contextmanager
def unmounted_at_end(path: Path, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> Iterator[None]:
    """Unmount the size-limited workspace at ``path`` when the block ends, however it ends.

    For the run (and the task worker's step) that mounted it with ``Workspace.prepare``:
    see ``unmount_size_limited`` for why. A failure to unmount is ``logger``'s warning.
    """
    try:
        yield
    finally:
        problem = unmount_size_limited(path)
        if problem is not None:
            logger.warning("%s", problem)


@contextmanager
def mounted(path: Path) -> Iterator[None]:
    """Keep the size-limited workspace at ``path`` mounted while the block runs.

    For readers after its run ended (export, live replay): the run unmounted
    it. A workspace already mounted, or made without a size limit, is used as
    it is; only a mount made here is undone here.
    """
    image = size_image(path)
    if os.path.ismount(path) or not image.exists():
        yield
        return
    try:
        _mount(image, path)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise WorkspaceError(f"cannot mount the run workspace {path} from {image}: {_why(exc)}") from None
    try:
        yield
    finally:
        unmount_size_limited(path)


@contextmanager
def workspace_lock(path: Path) -> Iterator[None]:
    """One run at a time per workspace ``path``, across processes (released if the process dies)."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkspaceError(f"another run is using workspace {path}; wait for it to end") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _why(exc: OSError | subprocess.CalledProcessError) -> str:
    """What a failed mount command said (the first line of its stderr: mount adds a hint to read
    dmesg), else the error itself."""
    detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else ""
    return detail.splitlines()[0] if detail else str(exc)


def _system(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)


@dataclass
class _Occupancy:
    snapshot: str | None = None
    active: int = 0
    exclusive: bool = False


class Workspace:
    """A run's private clone; steps check snapshots out of it and commit new ones."""

    def __init__(self, path: Path, owner: tuple[int, int] | None = None) -> None:
        """``owner``: uid:gid that sandboxed commands run as, when it is not ours.

        Files the host checks out are handed to that uid so the commands can
        write them (only possible, and only needed, when the host runs as root).
        """
        self.path = path
        self.owner = owner
        try:
            self.repo = git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise WorkspaceError(f"{path} is not a run workspace (no git repository)") from None
        self._lock = threading.Lock()
        self._occupancy = _Occupancy()
        self._known_commits: set[str] = set()

    @classmethod
    def prepare(
        cls, source: Path, base: str, path: Path, owner: tuple[int, int] | None = None,
        size: str | None = None,
    ) -> Workspace:
        """Clone ``source`` into ``path`` unless an earlier run already did.

        The clone is made next to ``path`` and renamed into place, so a process
        killed mid-clone leaves no half-made workspace behind. With ``size`` (``8g``),
        ``path`` is first made a filesystem of that size (``mount_size_limited``,
        which raises ``WorkspaceSizeLimitError`` where it cannot: never a workspace
        without the limit asked for); the clone then goes straight into it, after
        emptying what a killed clone left. Without ``size`` the workspace has no limit.
        """
        if size:
            mount_size_limited(path, size)
        if size and not (path / ".git").is_dir():
            files = WorkspaceFiles(path)
            for leftover in files.listdir():
                files.remove_tree(leftover)
            git.Repo.clone_from(str(source.resolve()), str(path), no_checkout=True, env=_ISOLATED_ENV)
        elif not (path / ".git").is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.with_name(path.name + ".cloning")
            shutil.rmtree(staging, ignore_errors=True)
            git.Repo.clone_from(str(source.resolve()), str(staging), no_checkout=True, env=_ISOLATED_ENV)
            staging.rename(path)
        workspace = cls(path, owner)
        workspace._ensure_commit(source, base)
        workspace._configure()
        return workspace

    def _git(self, *args: str, env: dict[str, str] | None = None) -> str:
        return run_git(self.path, *args, env=env)

    def _ensure_commit(self, source: Path, sha: str) -> None:
        if not self.has_commit(sha):
            self._git("fetch", "--quiet", str(source.resolve()), sha)

    def _configure(self) -> None:
        exclude = self.path / ".git" / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        lines = exclude.read_text().splitlines() if exclude.exists() else []
        if f"/{AGENTIC_DIR}/" not in lines:
            exclude.write_text("\n".join([*lines, f"/{AGENTIC_DIR}/"]) + "\n")
        (self.path / ".git" / "info" / "attributes").write_text(NEUTRAL_ATTRIBUTES)
        (self.path / ".git" / "index.lock").unlink(missing_ok=True)  # left by a killed process

    @property
    def epoch(self) -> str:
        """A random id made when this workspace was created.

        Cache keys include it: cached results point at snapshots that only this
        workspace holds, so a recreated workspace must not reuse them.
        """
        marker = self.path / ".git" / "agentic-epoch"
        if not marker.exists():
            marker.write_text(uuid.uuid4().hex)
        return marker.read_text().strip()

    def has_commit(self, sha: str) -> bool:
        """Whether the workspace holds commit ``sha``.

        Every step asks this of its input snapshot; a commit found once stays
        (nothing here deletes snapshots), so git is asked only the first time.
        """
        if sha in self._known_commits:
            return True
        try:
            self._git("cat-file", "-e", f"{sha}^{{commit}}")
        except git.GitCommandError:
            return False
        self._known_commits.add(sha)
        return True

    @contextmanager
    def checkout(self, snapshot: str, *, exclusive: bool) -> Iterator[Path]:
        """Hold the worktree at ``snapshot`` for the duration of a step.

        Steps that only read may share the worktree; the plan guarantees they
        start from the same snapshot. A writing step holds it alone. The
        worktree is reset (checkout plus clean) whenever it is taken while
        nobody else holds it, so every step starts from exactly its snapshot.
        """
        if not self.has_commit(snapshot):
            raise SnapshotMissingError(
                f"snapshot {snapshot[:12]} is not in workspace {self.path}; it was made by a "
                "cached step of an earlier run whose workspace is gone. Re-run with --fresh."
            )
        with self._lock:
            occ = self._occupancy
            if occ.active and (exclusive or occ.exclusive or occ.snapshot != snapshot):
                raise WorkspaceError(
                    f"workspace is busy at snapshot {str(occ.snapshot)[:12]}; a step wanted "
                    f"{snapshot[:12]} (steps that write the workspace must be ordered)"
                )
            if not occ.active:
                self._restore(snapshot)
                occ.snapshot, occ.exclusive = snapshot, exclusive
            occ.active += 1
        try:
            yield self.path
        finally:
            with self._lock:
                occ.active -= 1

    def _restore(self, snapshot: str) -> None:
        self._git("checkout", "--quiet", "--force", "--detach", snapshot)
        self._clean()
        if self.hand_over():
            # git's index holds each file's stat from before the hand-over (owner, ctime): without
            # this, the next checkout would rewrite every such file as ours, and the next hand-over
            # give each back (seconds a step on a 10 000-file worktree; bench/snapshot_cost.py).
            self._git("update-index", "-q", "--refresh")

    def _clean(self) -> None:
        """Remove everything untracked, ignored files included, but the reports (``git clean -ffdx``).

        git cannot remove a directory nested deeper than a path may be long, and a
        hostile step can make one: what git leaves, the workspace boundary removes
        (it works by descriptor, at any depth), then git cleans again.
        """
        try:
            self._git("clean", "-ffdxq", "-e", f"/{AGENTIC_DIR}/")
            return
        except git.GitCommandError:
            pass
        untracked = run_git_bytes(self.path, "ls-files", "-z", "--others", "--directory", "-x", f"/{AGENTIC_DIR}/")
        for name in filter(None, untracked.split(b"\0")):
            self.files.remove_tree(os.fsdecode(name.rstrip(b"/")))
        try:
            self._git("clean", "-ffdxq", "-e", f"/{AGENTIC_DIR}/")
        except git.GitCommandError as exc:
            raise WorkspaceError(f"the workspace {self.path} could not be reset to its snapshot: git clean failed "
                                 f"({shown(str(exc.stderr).strip()[:300])})") from None

    def is_full(self) -> bool:
        """Whether the worktree is a size-limited filesystem with (almost) no space left."""
        if not os.path.ismount(self.path):
            return False
        info = os.statvfs(self.path)
        return info.f_bavail * info.f_frsize < WORKSPACE_FULL_BYTES

    def out_of_space(self, error: BaseException) -> bool:
        """Whether ``error``, of host git or a host write in the worktree, is this size-limited workspace full.

        The host writes into the workspace too (the snapshot's git objects, the report
        directories), so a step that leaves it nearly full makes those fail: the caller
        then names the limit instead of showing a raw git or OS error. Git names ENOSPC
        in its message (``unable to write loose object file: No space left on device``);
        a translated message is recognised by the space left (git keeps its partial object).
        """
        if not os.path.ismount(self.path):
            return False
        if isinstance(error, OSError):
            return error.errno == errno.ENOSPC
        if isinstance(error, git.GitCommandError):
            return os.strerror(errno.ENOSPC) in str(error.stderr) or self.is_full()
        return False

    @property
    def files(self) -> WorkspaceFiles:
        """The worktree as host code may touch it (no link followed; see ``boundary``)."""
        return WorkspaceFiles(self.path)

    def hand_over(self, relative: str = "") -> int:
        """Give ``relative`` (recursively, never ``.git``) to the sandbox uid, if it has one.

        The worktree's top directory stays ours (git refuses to work in a
        repository whose top directory another uid owns) but gets the sandbox
        group with write permission, so commands can create files there.
        Ownership changes never follow a link (``WorkspaceFiles.chown_tree``).
        Returns how many entries changed owner.
        """
        if self.owner is None:
            return 0
        uid, gid = self.owner
        if not relative:
            os.chown(self.path, os.getuid(), gid, follow_symlinks=False)
            self.files.chmod("", 0o775)
        return self.files.chown_tree(relative, uid, gid, skip_top=(".git",) if not relative else ())

    def prepare_reports(self, relative: str) -> WorkspaceFiles:
        """Make the report directory ``relative`` (under ``.agentic``) and hand it to the sandbox uid.

        ``.agentic`` survives between steps; whatever an earlier step left there
        (a link in place of a directory) is removed first, never followed. Only
        the directories made here change owner: the reset before a step hands the
        whole worktree over, ``.agentic`` included, and walking ``.agentic`` again
        here made every step slower than the one before (reports accumulate).
        """
        files = self.files
        top = files.lstat(AGENTIC_DIR)
        if top is not None and not stat.S_ISDIR(top.st_mode):
            files.remove_tree(AGENTIC_DIR)
        reports = files.sub(relative)
        try:
            reports.mkdirs("", owner=self.owner)
        except WorkspaceBoundaryError:  # a link somewhere below .agentic: start it afresh
            files.remove_tree(AGENTIC_DIR)
            reports.mkdirs("", owner=self.owner)
        return reports

    def snapshot(self, message: str, ref_name: str) -> str:
        """Commit the worktree as it is now; returns the snapshot commit id.

        If the worktree equals HEAD, HEAD is the snapshot (a step that made its
        own commits, or changed nothing, adds no commit of ours). A worktree
        holding an embedded repository is refused before git looks at it.
        """
        refuse_embedded_repositories(self.path)
        stage_worktree(self.path)
        tree = self._git("write-tree")
        head = self._git("rev-parse", "HEAD")
        if tree == self._git("rev-parse", f"{head}^{{tree}}"):
            sha = head
        else:
            date = self._git("show", "-s", "--format=%cI", head)
            sha = self._git("commit-tree", tree, "-p", head, "-m", message, env=commit_identity(date))
            self._git("update-ref", "--no-deref", "HEAD", sha)
        self._git("update-ref", f"{SNAPSHOT_REF_PREFIX}/{ref_name}", sha)
        return sha

    def changes(self, old: str, new: str) -> ChangeSummary:
        """Diff stat from snapshot ``old`` to snapshot ``new``."""
        if old == new:
            return ChangeSummary()
        files = []
        raw = run_git_bytes(self.path, "diff", "--numstat", "--no-renames", "-z", old, new)
        for entry in raw.split(b"\0"):
            if not entry.strip():
                continue
            added, deleted, name = entry.decode("utf-8", errors="surrogateescape").split("\t", 2)
            path = shown(name)
            binary = added == "-"
            files.append(
                FileChange(path=path, added=0 if binary else int(added),
                           deleted=0 if binary else int(deleted), binary=binary)
            )
        return ChangeSummary(files=files)

    def diff(self, old: str, new: str) -> str:
        return self._git("diff", "--no-color", old, new)

