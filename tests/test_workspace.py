"""Run workspaces and snapshots on real git repositories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import _missing, nest_directories

from prefect_agentic.errors import SnapshotMissingError, WorkspaceError
from prefect_agentic.workspace import (
    Workspace,
    clone_at,
    mounted,
    remove_workspace,
    resolve_base,
    run_key,
    size_image,
    unmount_size_limited,
    workspace_lock,
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(make_repo):  # type: ignore[no-untyped-def]
    return make_repo({"a.txt": "one\n", "pkg/b.py": "x = 1\n", ".gitignore": "*.log\n"})


@pytest.fixture
def workspace(repo: Path, tmp_path: Path) -> Workspace:
    return Workspace.prepare(repo, resolve_base(repo, "HEAD"), tmp_path / "ws")


def test_the_users_repository_is_never_touched(repo: Path, workspace: Workspace) -> None:
    before = (git(repo, "for-each-ref"), git(repo, "status", "--porcelain"), git(repo, "stash", "list"))
    base = resolve_base(repo, "HEAD")
    with workspace.checkout(base, exclusive=True) as path:
        (path / "a.txt").write_text("changed\n")
        workspace.snapshot("s", "test/s")
    assert (git(repo, "for-each-ref"), git(repo, "status", "--porcelain"),
            git(repo, "stash", "list")) == before
    assert (repo / "a.txt").read_text() == "one\n"


def test_snapshots_are_deterministic_commits(repo: Path, tmp_path: Path) -> None:
    base = resolve_base(repo, "HEAD")
    shas = []
    for name in ("ws1", "ws2"):
        ws = Workspace.prepare(repo, base, tmp_path / name)
        with ws.checkout(base, exclusive=True) as path:
            (path / "a.txt").write_text("two\n")
            (path / "new.txt").write_text("new\n")
            shas.append(ws.snapshot("agentic snapshot: p/s", "p/s"))
    assert shas[0] == shas[1] != base
    assert git(tmp_path / "ws1", "rev-parse", "refs/agentic/snapshots/p/s") == shas[0]


def test_a_step_starts_from_exactly_its_snapshot(repo: Path, workspace: Workspace) -> None:
    base = resolve_base(repo, "HEAD")
    with workspace.checkout(base, exclusive=True) as path:
        (path / "a.txt").write_text("two\n")
        after = workspace.snapshot("s", "p/s")
    with workspace.checkout(base, exclusive=False) as path:
        (path / "stray.txt").write_text("left by a reader\n")
        (path / "debug.log").write_text("ignored but still removed\n")
    with workspace.checkout(after, exclusive=False) as path:
        assert (path / "a.txt").read_text() == "two\n"
        assert not (path / "stray.txt").exists()
        assert not (path / "debug.log").exists()
    with workspace.checkout(base, exclusive=False) as path:
        assert (path / "a.txt").read_text() == "one\n"


def test_a_reset_rewrites_and_hands_over_only_what_differs(repo: Path, tmp_path: Path) -> None:
    """Steps that only read take no snapshot; their resets must not rewrite every file each time.

    The hand-over to the sandbox uid changes each file's owner and ctime after git
    recorded them, so git took every file for modified at the next checkout,
    rewrote it as root, and the hand-over gave it back: a whole-worktree rewrite
    a step (seconds on a large repository).
    """
    owner = (4321, 4321) if os.getuid() == 0 else None
    base = resolve_base(repo, "HEAD")
    workspace = Workspace.prepare(repo, base, tmp_path / "ws", owner=owner)
    with workspace.checkout(base, exclusive=False) as path:  # the first reset hands everything over
        (path / "stray.txt").write_text("left by a reader\n")
    kept = path / "pkg" / "b.py"
    before = kept.stat()
    time.sleep(0.05)  # past the file system's clock granularity, so a rewrite or a chown would show
    for _ in range(2):
        with workspace.checkout(base, exclusive=False):
            pass
    after = kept.stat()
    assert (after.st_ino, after.st_ctime_ns) == (before.st_ino, before.st_ctime_ns)
    assert not (path / "stray.txt").exists()
    if owner:
        assert (after.st_uid, after.st_gid) == owner


def test_a_reset_removes_directories_nested_deeper_than_git_can_reach(repo: Path, workspace: Workspace) -> None:
    base = resolve_base(repo, "HEAD")
    with workspace.checkout(base, exclusive=True) as path:
        nest_directories(path / "pkg", 3000, "left")  # longer than a path may be: git clean fails on it
        assert workspace.snapshot("s", "p/s") == base  # git cannot reach the file: nothing to snapshot
    with workspace.checkout(base, exclusive=False) as path:
        assert sorted(os.listdir(path / "pkg")) == ["b.py"]


def test_a_step_that_changes_nothing_keeps_its_input_snapshot(repo: Path, workspace: Workspace) -> None:
    base = resolve_base(repo, "HEAD")
    with workspace.checkout(base, exclusive=True):
        assert workspace.snapshot("s", "p/s") == base


def test_reports_directory_is_not_part_of_snapshots(repo: Path, workspace: Workspace) -> None:
    base = resolve_base(repo, "HEAD")
    with workspace.checkout(base, exclusive=True) as path:
        (path / ".agentic" / "reports").mkdir(parents=True)
        (path / ".agentic" / "reports" / "r.xml").write_text("<x/>")
        assert workspace.snapshot("s", "p/s") == base


def test_changes_between_snapshots(repo: Path, workspace: Workspace) -> None:
    base = resolve_base(repo, "HEAD")
    with workspace.checkout(base, exclusive=True) as path:
        (path / "a.txt").write_text("one\ntwo\nthree\n")
        (path / "pkg" / "b.py").unlink()
        after = workspace.snapshot("s", "p/s")
    change = workspace.changes(base, after)
    assert {(f.path, f.added, f.deleted) for f in change.files} == {("a.txt", 2, 0), ("pkg/b.py", 0, 1)}
    assert change.lines_changed == 3
    assert change.stat_line() == "2 files, +2 -1"
    assert "+three" in workspace.diff(base, after)


def test_readers_share_the_worktree_but_a_writer_holds_it_alone(repo: Path, workspace: Workspace) -> None:
    base = resolve_base(repo, "HEAD")
    with workspace.checkout(base, exclusive=False):
        with workspace.checkout(base, exclusive=False):
            pass
        with pytest.raises(WorkspaceError, match="busy"):
            with workspace.checkout(base, exclusive=True):
                pass


def test_a_missing_snapshot_is_reported_with_the_way_out(workspace: Workspace) -> None:
    with pytest.raises(SnapshotMissingError, match="--fresh"):
        with workspace.checkout("0" * 40, exclusive=False):
            pass


def test_only_one_run_per_workspace(workspace: Workspace) -> None:
    errors: list[Exception] = []
    with workspace_lock(workspace.path):
        def second() -> None:
            try:
                with workspace_lock(workspace.path):
                    pass
            except WorkspaceError as exc:
                errors.append(exc)
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "another run" in str(errors[0])


def test_bad_repository_and_ref_are_named(tmp_path: Path, repo: Path) -> None:
    with pytest.raises(WorkspaceError, match="is not a git repository"):
        resolve_base(tmp_path, "HEAD")
    with pytest.raises(WorkspaceError, match="'nope' names no commit"):
        resolve_base(repo, "nope")


def test_run_key_depends_on_plan_repo_and_base(repo: Path) -> None:
    assert run_key("p", repo, "a" * 40) == run_key("p", repo, "a" * 40)
    assert run_key("p", repo, "a" * 40) != run_key("p", repo, "b" * 40)
    assert run_key("p", repo, "a" * 40) != run_key("q", repo, "a" * 40)


def test_hooks_in_the_workspace_never_run(repo: Path, workspace: Workspace, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    hook = workspace.path / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    base = resolve_base(repo, "HEAD")
    with workspace.checkout(base, exclusive=True) as path:
        (path / "a.txt").write_text("x\n")
        after = workspace.snapshot("s", "p/s")
    with workspace.checkout(after, exclusive=False):
        pass
    assert not marker.exists()


def test_a_size_limited_workspace_costs_little_disk_and_is_mounted_only_while_used(repo: Path,
                                                                                   tmp_path: Path) -> None:
    if os.getuid() != 0:
        _missing("mounting a size-limited workspace needs root")  # under CI=true: a failure, never a skip
    path = tmp_path / "limited"
    workspace = Workspace.prepare(repo, resolve_base(repo, "HEAD"), path, size="8g")
    assert os.path.ismount(path)
    image = size_image(path)
    assert image.stat().st_size == 8 * 1024**3
    assert image.stat().st_blocks * 512 < 32 * 1024**2  # sparse: an 8g limit is not 8g (nor 70 MB) of disk
    assert unmount_size_limited(path) is None and not os.path.ismount(path)
    assert not (path / ".git").exists()  # what a finished run leaves: the image, no mount, no loop device
    with mounted(path):  # how export and live replay read it again
        assert os.path.ismount(path) and Workspace(path).has_commit(resolve_base(repo, "HEAD"))
    assert not os.path.ismount(path)
    again = Workspace.prepare(repo, resolve_base(repo, "HEAD"), path, size="8g")  # a resumed run
    assert os.path.ismount(path) and again.epoch == workspace.epoch
    unmount_size_limited(path)


def test_a_clone_at_a_commit_gets_its_own_run_key_and_its_workspace_can_be_removed_mounted(
        repo: Path, tmp_path: Path) -> None:
    """What a chaos campaign does for each of its runs: a clone holding the base commit (a detached
    one too), a workspace of its own on it, and afterwards no trace of that workspace."""
    git(repo, "checkout", "-q", "--detach")
    (repo / "a.txt").write_text("detached\n")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qam", "on no branch")
    base = resolve_base(repo, "HEAD")
    clone = tmp_path / "clone.git"
    clone_at(repo, base, clone)
    assert resolve_base(clone, "HEAD") == base and run_key("p", clone, base) != run_key("p", repo, base)
    with pytest.raises(WorkspaceError, match="cannot clone"):
        clone_at(repo, "0" * 40, tmp_path / "none.git")
    size = "8g" if os.getuid() == 0 else None  # root: a loop-mounted image, as runs make it
    path = tmp_path / "workspaces" / run_key("p", clone, base)
    workspace = Workspace.prepare(clone, base, path, size=size)
    assert workspace.has_commit(base) and os.path.ismount(path) == (size is not None)
    assert remove_workspace(path) is None
    assert sorted((tmp_path / "workspaces").rglob("*")) in ([], [tmp_path / "workspaces" / ".images"])
    assert not os.path.ismount(path) and remove_workspace(path) is None  # a workspace already gone: nothing to do


# Prepares a size-limited workspace in a process of its own and says how that went (as JSON). With a
# uid it first drops to that user: after the imports, since the interpreter lives where that user
# cannot read.
PREPARE_LIMITED = """
import json, os, sys
from pathlib import Path
from prefect_agentic.workspace import Workspace
source, base, path, uid = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
if uid:
    os.setgroups([])
    os.setgid(int(uid))
    os.setuid(int(uid))
try:
    Workspace.prepare(source, base, path, size="64m")
    error = None
except Exception as exc:
    error = {"type": type(exc).__name__, "message": str(exc)}
print(json.dumps({"uid": os.getuid(), "error": error, "clone": (path / ".git").exists(),
                  "mounted": os.path.ismount(path)}))
"""


@pytest.mark.parametrize("who", ["uid 65534", "root without capabilities"])
def test_a_size_limit_that_cannot_be_enforced_is_refused_never_dropped(repo: Path, tmp_path: Path, who: str) -> None:
    """Fails closed: a workspace the limit cannot be put on is never made, and the error says what to do.

    As another user, mounting needs root; as root without capabilities (what a Docker work pool's
    flow-run container is: no CAP_SYS_ADMIN), the mount itself is refused by the kernel.
    """
    if os.getuid() != 0:
        _missing("changing to another user or dropping capabilities needs root")
    shared = Path(tempfile.mkdtemp(prefix="agentic-size-refused-"))  # a place the other user may write
    try:
        shared.chmod(0o777)
        source = shared / "source"
        subprocess.run(["git", "clone", "--quiet", str(repo), str(source)], check=True)
        subprocess.run(["chmod", "-R", "a+rX", str(source)], check=True)
        path = shared / "workspaces" / "run"
        prepare = [sys.executable, "-c", PREPARE_LIMITED, str(source), resolve_base(repo, "HEAD"), str(path)]
        # root without capabilities: none is left after exec, the bounding set included
        command = ([*prepare, "65534"] if who == "uid 65534" else
                   ["setpriv", "--inh-caps=-all", "--bounding-set=-all", *prepare, ""])
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        assert done.returncode == 0, done.stderr
        outcome = json.loads(done.stdout)
        assert outcome["uid"] == (65534 if who == "uid 65534" else 0)
        assert outcome["error"] is not None, f"a workspace was made without its limit: {outcome}"
        assert outcome["error"]["type"] == "WorkspaceSizeLimitError"
        message = outcome["error"]["message"]
        assert "the workspace size limit 64m cannot be enforced" in message
        assert ("needs root, and this process runs as uid 65534" if who == "uid 65534" else "mount") in message
        assert "an empty SandboxSettings.workspace_size means no limit" in message  # the explicit way out
        assert not outcome["clone"] and not outcome["mounted"]
        assert not size_image(path).exists()
    finally:
        shutil.rmtree(shared)
