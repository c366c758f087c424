"""The one door through which host code touches a run's worktree.

Everything under the worktree was written by sandboxed commands and is
attacker-controlled: names (any bytes), symlinks, FIFOs, sizes. Host code
(which often runs as root) reads reports, edits files and hands ownership
over only through ``WorkspaceFiles``, which:

* resolves every path component itself, from a directory descriptor of the
  worktree, with ``O_NOFOLLOW`` (openat-style), so no link (planted before
  or swapped in during the operation) is ever followed and no name leaves
  the worktree (``..``, absolute paths and empty components are refused);
* reads only regular files, and at most a capped number of bytes;
* writes by creating a new file next to the target and renaming it over the
  target, so a link planted at the target is replaced, never written through;
* changes ownership with ``follow_symlinks=False`` relative to a directory
  descriptor, and walks trees with ``os.fwalk`` without following links.

``tests/test_boundary.py`` scans the package for host file operations
outside this module, so a new tool cannot forget to come through here.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from prefect_agentic.errors import WorkspaceBoundaryError

DEFAULT_READ_LIMIT = 32 * 1024 * 1024
"""Bytes host code reads from one workspace file unless the caller says otherwise."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

RelPath = str | PurePosixPath


def shown(name: str | bytes) -> str:
    """A workspace name as safe one-line text (non-UTF-8 bytes and controls escaped)."""
    if isinstance(name, str):
        name = os.fsencode(name)
    text = name.decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _components(relative: RelPath) -> list[str]:
    text = str(relative)
    if "\0" in text:
        raise WorkspaceBoundaryError(f"workspace path {shown(text)!r} contains a NUL byte")
    if text.startswith("/"):
        raise WorkspaceBoundaryError(f"workspace path {shown(text)!r} is absolute; paths are relative to the workspace")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise WorkspaceBoundaryError(f"workspace path {shown(text)!r} leaves the workspace ('..')")
    return parts


@dataclass(frozen=True)
class WorkspaceFiles:
    """Host-side access to files under ``root`` (a run's worktree), never following links.

    ``prefix`` makes a view of a subdirectory (``sub``): paths given to the
    view are relative to it, and it is resolved with the same rules on every
    call (a directory swapped for a link between calls is refused, not followed).
    """

    root: Path
    prefix: tuple[str, ...] = ()
    read_limit: int = DEFAULT_READ_LIMIT

    # -- views -----------------------------------------------------------------------------

    def sub(self, relative: RelPath) -> WorkspaceFiles:
        """A view rooted at the subdirectory ``relative`` (which need not exist yet)."""
        return WorkspaceFiles(self.root, (*self.prefix, *_components(relative)), self.read_limit)

    @property
    def relative(self) -> str:
        """This view's directory, relative to the worktree (``""`` for the worktree itself)."""
        return "/".join(self.prefix)

    def describe(self, relative: RelPath = "") -> str:
        """``relative`` as the worktree names it (for messages)."""
        return shown("/".join([*self.prefix, *_components(relative)]) or ".")

    # -- descriptors -----------------------------------------------------------------------

    @contextmanager
    def _dir(self, parts: list[str], *, create: bool = False,
             owner: tuple[int, int] | None = None) -> Iterator[int]:
        """A descriptor of directory ``prefix/parts``, every component opened without following.

        ``create``: make missing components; ``owner``: uid:gid to give the ones made here.
        """
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            walked: list[str] = []
            for part in [*self.prefix, *parts]:
                walked.append(part)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        made = False
                    child = self._open_dir_child(fd, part, walked)
                    if made and owner is not None:
                        os.fchown(child, *owner)
                except OSError as exc:
                    raise self._refusal(exc, fd, part, walked) from None
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _open_dir_child(self, fd: int, part: str, walked: list[str]) -> int:
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise self._refusal(exc, fd, part, walked) from None

    def _refusal(self, exc: OSError, fd: int, part: str, walked: list[str]) -> Exception:
        where = shown("/".join(walked))
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                kind = "a symbolic link" if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode) else "not a directory"
            except OSError:
                kind = "not a directory"
            return WorkspaceBoundaryError(
                f"workspace path {where!r} is {kind}; host code never follows links in the workspace")
        return exc

    def _split(self, relative: RelPath) -> tuple[list[str], str]:
        parts = _components(relative)
        if not parts:
            raise WorkspaceBoundaryError("a workspace file path is empty")
        return parts[:-1], parts[-1]

    # -- queries ---------------------------------------------------------------------------

    def lstat(self, relative: RelPath = "") -> os.stat_result | None:
        """``lstat`` of ``relative`` (a link is reported as a link), or None if it is missing."""
        parts = _components(relative)
        try:
            if not parts:
                with self._dir([]) as fd:
                    return os.fstat(fd)
            with self._dir(parts[:-1]) as fd:
                return os.lstat(parts[-1], dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, relative: RelPath = "") -> bool:
        """Whether ``relative`` exists (a link counts: it exists, though it is never followed)."""
        return self.lstat(relative) is not None

    def is_file(self, relative: RelPath) -> bool:
        found = self.lstat(relative)
        return found is not None and stat.S_ISREG(found.st_mode)

    def is_dir(self, relative: RelPath = "") -> bool:
        found = self.lstat(relative)
        return found is not None and stat.S_ISDIR(found.st_mode)

    # -- reading ---------------------------------------------------------------------------

    def read_bytes(self, relative: RelPath, *, limit: int | None = None) -> bytes:
        """The content of regular file ``relative``; refuses links, FIFOs, devices, and files over ``limit``."""
        cap = self.read_limit if limit is None else limit
        parents, name = self._split(relative)
        with self._dir(parents) as dir_fd:
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise WorkspaceBoundaryError(
                        f"workspace file {self.describe(relative)!r} is a symbolic link; host code "
                        "never follows links in the workspace") from None
                raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise WorkspaceBoundaryError(
                    f"workspace path {self.describe(relative)!r} is not a regular file")
            if info.st_size > cap:
                raise WorkspaceBoundaryError(
                    f"workspace file {self.describe(relative)!r} is {info.st_size} bytes, over the "
                    f"{cap}-byte limit for files the host reads")
            chunks, total = [], 0
            while chunk := os.read(fd, min(1 << 20, cap + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > cap:  # grew while we read
                    raise WorkspaceBoundaryError(
                        f"workspace file {self.describe(relative)!r} is over the {cap}-byte limit "
                        "for files the host reads")
            return b"".join(chunks)
        finally:
            os.close(fd)

    def read_text(self, relative: RelPath, *, limit: int | None = None, errors: str = "replace") -> str:
        """``read_bytes`` decoded as UTF-8 (undecodable bytes replaced unless ``errors`` says otherwise)."""
        return self.read_bytes(relative, limit=limit).decode("utf-8", errors=errors)

    def read_optional(self, relative: RelPath, *, limit: int | None = None) -> bytes | None:
        """``read_bytes``, or None when ``relative`` (or a directory above it) does not exist."""
        try:
            return self.read_bytes(relative, limit=limit)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def listdir(self, relative: RelPath = "") -> list[str]:
        """Names in directory ``relative`` (non-UTF-8 bytes as surrogate escapes, as ``os`` gives them)."""
        with self._dir(_components(relative)) as fd:
            return sorted(os.listdir(fd))

    def walk(self, relative: RelPath = "", *, skip_top: tuple[str, ...] = ()) -> Iterator[tuple[str, list[str], list[str]]]:
        """``(directory, subdirectories, files)`` below ``relative``, never entering a link.

        ``directory`` is relative to this view (``""`` at the top). Links appear
        in ``files``. Names listed in ``skip_top`` are not entered at the top
        level; a caller may also remove names from ``subdirectories``.
        """
        with self._dir(_components(relative)) as fd:
            for here, _, dirs, files in _walk(fd, skip_top):
                yield here, dirs, files

    # -- writing ---------------------------------------------------------------------------

    def mkdirs(self, relative: RelPath, *, owner: tuple[int, int] | None = None) -> None:
        """Create directory ``relative`` and its parents; an existing link in the way is refused.

        ``owner``: uid:gid to give the directories made here (existing ones are left as they are).
        """
        with self._dir(_components(relative), create=True, owner=owner):
            pass

    def write_bytes(self, relative: RelPath, data: bytes, *, mode: int = 0o644,
                    owner: tuple[int, int] | None = None) -> None:
        """Replace ``relative`` with a new regular file holding ``data`` (parents are created).

        The file is written under a fresh name and renamed over the target, so
        whatever was at the target (a link to a host file, a FIFO) is replaced,
        never written through. ``owner``: uid:gid to give the new file.
        """
        parents, name = self._split(relative)
        with self._dir(parents, create=True) as dir_fd:
            temp = f".agentic-write-{uuid.uuid4().hex}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode, dir_fd=dir_fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if owner is not None:
                    os.fchown(fd, *owner)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            try:
                if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                    raise WorkspaceBoundaryError(
                        f"workspace path {self.describe(relative)!r} is a directory, not a file")
            except FileNotFoundError:
                pass
            except WorkspaceBoundaryError:
                os.unlink(temp, dir_fd=dir_fd)
                raise
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    def write_text(self, relative: RelPath, text: str, **kwargs: object) -> None:
        """``write_bytes`` of ``text`` encoded as UTF-8."""
        self.write_bytes(relative, text.encode("utf-8"), **kwargs)  # type: ignore[arg-type]

    def unlink(self, relative: RelPath, *, missing_ok: bool = True) -> None:
        """Remove the entry ``relative`` (a link is removed, not its target)."""
        parents, name = self._split(relative)
        try:
            with self._dir(parents) as dir_fd:
                try:
                    os.unlink(name, dir_fd=dir_fd)
                except IsADirectoryError:
                    raise WorkspaceBoundaryError(
                        f"workspace path {self.describe(relative)!r} is a directory, not a file") from None
        except (FileNotFoundError, NotADirectoryError):
            if not missing_ok:
                raise

    def remove_tree(self, relative: RelPath) -> None:
        """Remove ``relative`` and everything below it, never following a link (a link is just removed)."""
        parents, name = self._split(relative)
        try:
            with self._dir(parents) as dir_fd:
                info = os.lstat(name, dir_fd=dir_fd)
                if not stat.S_ISDIR(info.st_mode):
                    os.unlink(name, dir_fd=dir_fd)
                    return
                _remove_dir_contents(dir_fd, name)
                os.rmdir(name, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            pass

    def chown_tree(self, relative: RelPath, uid: int, gid: int, *, skip_top: tuple[str, ...] = ()) -> int:
        """Give ``relative`` and everything below it to ``uid:gid``; links themselves, never their targets.

        Names in ``skip_top`` (directly below ``relative``) are left alone and not entered.
        Entries that already belong to ``uid:gid`` are not touched: a ``chown``
        changes a file's ctime even when the owner stays, and git then re-reads
        every such file at the next checkout and snapshot (on a 10 000-file
        worktree, seconds a step; ``bench/snapshot_cost.py``). Returns how many
        entries changed owner.
        """
        parts = _components(relative)
        changed = 0
        if parts:
            with self._dir(parts[:-1]) as dir_fd:
                changed += _chown_entry(dir_fd, parts[-1], uid, gid)
        with self._dir(parts) as fd:
            for _, dir_fd, dirs, files in _walk(fd, skip_top):
                for name in dirs + files:
                    changed += _chown_entry(dir_fd, name, uid, gid)
        return changed

    def chmod(self, relative: RelPath, mode: int) -> None:
        """``chmod`` of directory or file ``relative``; refuses a link (Linux cannot chmod one)."""
        parts = _components(relative)
        if not parts:
            with self._dir([]) as fd:
                os.fchmod(fd, mode)
            return
        with self._dir(parts[:-1]) as dir_fd:
            if stat.S_ISLNK(os.lstat(parts[-1], dir_fd=dir_fd).st_mode):
                raise WorkspaceBoundaryError(f"workspace path {self.describe(relative)!r} is a symbolic link")
            _fchmod_at(dir_fd, parts[-1], mode)


def _fchmod_at(dir_fd: int, name: str, mode: int) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


_REMOVE_DEPTH = 64
"""Emptying a directory descends at most this deep; deeper directories are first moved up."""


def _remove_dir_contents(parent_fd: int, name: str) -> None:
    """Empty directory ``name`` below ``parent_fd``, at any depth, never following a link.

    A hostile step can nest directories deeper than a path may be long (git
    cannot remove them) and deeper than Python may recurse. This holds one
    descriptor per level and goes no deeper than ``_REMOVE_DEPTH``: a
    directory below that is renamed into the top one and emptied from there.
    """
    top = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    stack = [(top, "", _unlink_all_but_directories(top))]  # (descriptor, its name above, directories left)
    try:
        while stack:
            fd, _, pending = stack[-1]
            if not pending:
                _, emptied, _ = stack.pop()
                os.close(fd)
                if stack:
                    os.rmdir(emptied, dir_fd=stack[-1][0])
                continue
            sub = pending.pop()
            if len(stack) >= _REMOVE_DEPTH:
                moved = f".removing-{uuid.uuid4().hex}"
                os.rename(sub, moved, src_dir_fd=fd, dst_dir_fd=top)
                stack[0][2].append(moved)
                continue
            child = os.open(sub, _DIR_FLAGS, dir_fd=fd)
            stack.append((child, sub, []))  # on the stack before listing it, so a failure closes it too
            stack[-1][2].extend(_unlink_all_but_directories(child))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _unlink_all_but_directories(fd: int) -> list[str]:
    """Unlink every entry of directory ``fd`` that is not a directory; return the directories' names."""
    directories = []
    for entry in os.listdir(fd):
        if stat.S_ISDIR(os.lstat(entry, dir_fd=fd).st_mode):
            directories.append(entry)
        else:
            os.unlink(entry, dir_fd=fd)
    return directories


def _entries(fd: int, skip: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Names in directory ``fd``, sorted: real directories, then everything else (links included)."""
    dirs, files = [], []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.name not in skip:
                (dirs if entry.is_dir(follow_symlinks=False) else files).append(entry.name)
    return sorted(dirs), sorted(files)


def _walk(fd: int, skip_top: tuple[str, ...]) -> Iterator[tuple[str, int, list[str], list[str]]]:
    """Top-down walk below directory ``fd``: ``(relative directory, its descriptor, subdirectories, files)``.

    Only real directories are entered, each opened without following. No
    recursion, so any depth a hostile step made is walked; a directory's
    descriptor stays open only while subdirectories of it are left to enter.
    The descriptor yielded is valid until the walk goes on; the caller may
    remove names from the subdirectories to skip them.
    """
    stack: list[tuple[str, int, list[str]]] = []  # (relative directory, descriptor, subdirectories left, last first)
    here, current = "", os.dup(fd)
    try:
        while current >= 0:
            dirs, files = _entries(current, () if here else skip_top)
            yield here, current, dirs, files
            stack.append((here, current, dirs[::-1]))
            current = -1
            while stack and current < 0:
                parent, parent_fd, pending = stack[-1]
                if not pending:
                    os.close(stack.pop()[1])
                    continue
                name = pending.pop()
                try:
                    current = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
                except OSError:  # swapped for a link or removed meanwhile: not entered
                    continue
                here = f"{parent}/{name}" if parent else name
                if not pending:
                    os.close(stack.pop()[1])
    finally:
        if current >= 0:
            os.close(current)
        for _, left, _ in stack:
            os.close(left)


def _chown_entry(dir_fd: int, name: str, uid: int, gid: int) -> int:
    info = os.lstat(name, dir_fd=dir_fd)
    if (info.st_uid, info.st_gid) == (uid, gid):
        return 0
    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    return 1
