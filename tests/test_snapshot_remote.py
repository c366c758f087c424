"""The snapshot remote: snapshots travel between workspaces as git objects, and obey nothing in them.

A step's output is attacker-controlled. Here a "step" (host writes through
``WorkspaceFiles``, as a command in the sandbox could) plants hook scripts,
a git config file, a ``.gitattributes`` naming a filter and an embedded
repository; pushing the snapshot to the remote, fetching it into another
workspace and checking it out there must run none of them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.errors import SnapshotMissingError, WorkspaceBoundaryError
from prefect_agentic.snapshot_remote import (
    OBJECT_REF_PREFIX,
    SnapshotRemote,
    SnapshotRemoteError,
    run_ref,
)
from prefect_agentic.workspace import Workspace, resolve_base


def _hook(marker: Path) -> str:
    return f"#!/bin/sh\ntouch {marker}\n"


def _refs(remote: SnapshotRemote) -> list[str]:
    out = subprocess.run(["git", "for-each-ref", "--format=%(refname)"], cwd=remote.path, check=True,
                         capture_output=True, text=True).stdout
    return sorted(out.split())


def test_a_snapshot_travels_through_the_remote_and_nothing_in_it_runs(tmp_path: Path, make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"README.md": "hello\n"})
    base = resolve_base(repo, "HEAD")
    remote = SnapshotRemote.parse(f"file://{tmp_path / 'snapshots.git'}").ensure()
    one = Workspace.prepare(repo, base, tmp_path / "machine-a" / "run")
    remote.push(one.path, base, run_ref("run", "base"))

    marker = tmp_path / "pwned"
    files = WorkspaceFiles(one.path)
    with one.checkout(base, exclusive=True):
        for hook in ("pre-push", "post-checkout", "reference-transaction", "post-merge", "pre-receive"):
            files.write_text(f"hooks/{hook}", _hook(marker))
            files.chmod(f"hooks/{hook}", 0o755)
            files.write_text(f".githooks/{hook}", _hook(marker))
            files.chmod(f".githooks/{hook}", 0o755)
        files.write_text("config", f"[core]\n\thooksPath = hooks\n\tfsmonitor = touch {marker}\n"
                                   f"[filter \"evil\"]\n\tsmudge = touch {marker}\n\tclean = touch {marker}\n")
        files.write_text(".gitattributes", "* filter=evil diff=evil\n")
        files.write_text(".gitmodules", f"[submodule \"x\"]\n\tpath = x\n\turl = ext::sh -c touch% {marker}\n")
        snapshot = one.snapshot("step", "run/step")
    remote.push(one.path, snapshot, run_ref("run", "step"))
    assert f"{OBJECT_REF_PREFIX}/{snapshot}" in _refs(remote)
    assert "refs/agentic/runs/run/step" in _refs(remote)

    # another machine: its own workspace, made from the remote alone (not the user's repository)
    two = Workspace.prepare(remote.path, base, tmp_path / "machine-b" / "run")
    remote.fetch(two.path, snapshot)
    with two.checkout(snapshot, exclusive=True):
        assert WorkspaceFiles(two.path).read_text("config").startswith("[core]")
        assert WorkspaceFiles(two.path).read_text("hooks/post-checkout") == _hook(marker)
        assert two.snapshot("again", "run/again") == snapshot  # same content, same snapshot
    assert not marker.exists(), "git obeyed a hook, filter, fsmonitor or config the step wrote"


def test_an_embedded_repository_is_never_snapshotted_nor_pushed(tmp_path: Path, make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"README.md": "hello\n"})
    base = resolve_base(repo, "HEAD")
    remote = SnapshotRemote.parse(str(tmp_path / "snapshots.git")).ensure()
    one = Workspace.prepare(repo, base, tmp_path / "a")
    remote.push(one.path, base, run_ref("run", "base"))
    before = _refs(remote)
    marker = tmp_path / "pwned"
    files = WorkspaceFiles(one.path)
    with one.checkout(base, exclusive=True):
        files.write_text("vendor/.git/HEAD", "ref: refs/heads/main\n")
        files.write_text("vendor/.git/config", f"[core]\n\tfsmonitor = touch {marker}\n")
        files.write_text("vendor/.git/hooks/pre-push", _hook(marker))
        files.chmod("vendor/.git/hooks/pre-push", 0o755)
        with pytest.raises(WorkspaceBoundaryError, match="embedded git repository"):
            one.snapshot("step", "run/step")
    assert _refs(remote) == before
    assert not marker.exists()


@pytest.mark.parametrize("text", ["relative/path.git", "ext::sh -c touch% /tmp/x", "--upload-pack=touch /tmp/x",
                                  "ssh://host/repo.git", "/abs/ext::x"])
def test_the_remote_is_an_absolute_path_only(text: str) -> None:
    with pytest.raises(SnapshotRemoteError, match="absolute path"):
        SnapshotRemote.parse(text)


def test_a_snapshot_not_in_the_remote_says_so(tmp_path: Path, make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"README.md": "hello\n"})
    base = resolve_base(repo, "HEAD")
    remote = SnapshotRemote.parse(str(tmp_path / "snapshots.git")).ensure()
    one = Workspace.prepare(repo, base, tmp_path / "a")
    with pytest.raises(SnapshotMissingError, match="not in the snapshot remote"):
        remote.fetch(one.path, base)
    with pytest.raises(SnapshotRemoteError, match="not a snapshot id"):
        remote.fetch(one.path, "HEAD")
    with pytest.raises(SnapshotRemoteError, match="cannot name a snapshot ref"):
        remote.push(one.path, base, "../../heads/main")
    assert remote.epoch() == remote.epoch()  # made once, kept with the remote
