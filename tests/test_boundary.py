"""The workspace boundary is the only door: an AST scan of the package, and the door's own rules.

``prefect_agentic.boundary.WorkspaceFiles`` is the one place host code opens,
reads, writes, walks or chowns paths under a run's worktree. The scan below
fails on any host file operation elsewhere in the package unless it is listed
in ``ALLOWED`` with the reason its path is host-owned, so a new tool cannot
quietly open ``ctx.workspace / name`` and follow a link the sandbox planted.
"""

from __future__ import annotations

import ast
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import nest_directories

import prefect_agentic
from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.errors import WorkspaceBoundaryError
from prefect_agentic.tools.base import ToolContext
from prefect_agentic.tools.git import GitTool
from prefect_agentic.workspace import resolve_base

PACKAGE = Path(prefect_agentic.__file__).parent

# Method names that touch the file system when called on a path.
PATH_METHODS = {
    "read_text", "write_text", "read_bytes", "write_bytes", "open", "unlink", "mkdir", "rmdir", "exists",
    "is_file", "is_dir", "resolve", "rglob", "glob", "iterdir", "rename", "chmod", "chown", "touch",
    "stat", "lstat", "symlink_to", "hardlink_to", "is_symlink", "readlink",
}
# Module functions that do (None: every function of the module).
MODULE_FUNCTIONS: dict[str, set[str] | None] = {
    "os": {"walk", "fwalk", "chown", "lchown", "chmod", "open", "remove", "unlink", "listdir", "scandir", "stat",
           "lstat", "rename", "replace", "makedirs", "mkdir", "rmdir", "symlink", "readlink", "link"},
    "shutil": None, "ET": {"parse"}, "json": {"load"}, "tomllib": {"load"},
}
# Receivers that ARE the boundary (a WorkspaceFiles): ctx.files, ctx.reports, files, reports, x.sub(...).
BOUNDARY_RECEIVERS = {"files", "reports"}

HOST_STATE = "host-owned state under AGENTIC_HOME, never inside a worktree"
USER_PATH = "a path the user gave on the command line or in a call (not workspace content)"
GIT_DIR = "inside the worktree's .git, which is host-owned and mounted read-only in every sandbox"
ALLOWED: dict[str, str] = {
    "cli/llm.py:draft": USER_PATH, "cli/main.py:schema": USER_PATH, "cli/recipes.py:plan": USER_PATH,
    "cli/main.py:run": USER_PATH, "cli/deploy.py:submit": USER_PATH, "flows/run_plan.py:run_plan": USER_PATH
    + " (and RunAudit.open, which opens no file)",
    "plan/loader.py:load_plan": "the user's plan file",
    "upgrade_check.py:pack_at": USER_PATH + " (agentic upgrade-check --tools-from: a wheel or pack directory)",
    "upgrade_check.py:_version_of": USER_PATH + " (the --tools-from wheel or directory)",
    "chaos/spec.py:load_chaos_spec": "the user's chaos spec file (agentic run --chaos FILE)",
    "chaos/campaign.py:Campaign._run_killable": "the plan written to the campaign's own temporary directory "
                                                "for a process_kill chaos run's `agentic run` subprocess",
    "chaos/campaign.py:Campaign._own_clone": "the campaign's own temporary directory, holding the bare clone "
                                             "(no worktree) that one trial of the campaign runs on",
    "chaos/garble.py:SpoiledReports.read_bytes": "WorkspaceFiles' own lstat/read_bytes: a subclass of the "
                                                  "boundary calling it on itself",
    "blocks/branding.py:logo_url": "the logos shipped inside the installed package",
    "gates/store.py:ApprovalStore._write": HOST_STATE, "gates/store.py:ApprovalStore.asked_at": HOST_STATE,
    "gates/store.py:ApprovalStore.forget_asked": HOST_STATE, "gates/store.py:ApprovalStore.get": HOST_STATE,
    "record/store.py:AuditStore._exists": HOST_STATE, "record/store.py:AuditStore._local_log_file": HOST_STATE,
    "record/store.py:AuditStore._read": HOST_STATE, "record/store.py:AuditStore.append": HOST_STATE,
    "record/store.py:AuditStore.resolve": "AuditStore.resolve reads audit objects, not paths",
    "replay.py:_attempt_outcome": "AuditStore.resolve, not a path",
    "replay.py:_replay_replan": "AuditStore.resolve (recorded model answers), not a path", "replay.py:_live_attempt": "AuditStore.resolve",
    "replay.py:_live_context": GIT_DIR + " (whether the workspace still exists)",
    "stack.py:_spawn": HOST_STATE, "stack.py:running_stack": HOST_STATE, "stack.py:start_stack": HOST_STATE,
    "stack.py:stop_stack": HOST_STATE,
    "snapshot_remote.py:SnapshotRemote.ensure": "the snapshot remote: a host-owned bare repository (a setting)",
    "sandbox/limits.py:_field": "cgroup files under /sys/fs/cgroup", "sandbox/limits.py:_number": "cgroup files",
    "sandbox/limits.py:read_counters": "cgroup files",
    "sandbox/runner.py:_ContainerSandbox._create": GIT_DIR + "; the wheelhouse is a host setting",
    "workspace.py:Workspace._configure": GIT_DIR, "workspace.py:Workspace.epoch": GIT_DIR,
    "workspace.py:Workspace.prepare": "the clone's staging path next to the worktree (host-owned parent)",
    "workspace.py:mount_size_limited": "the image file in the host-owned .images directory, and the new "
                                       "filesystem's own lost+found before any step ran",
    "workspace.py:workspace_lock": "lock file next to the worktree, in its host-owned parent",
    "workspace.py:remove_workspace": "the image file in the host-owned .images directory (the worktree and "
                                     "its lock go through WorkspaceFiles)",
    "workspace.py:clone_at": USER_PATH + " (the source repository)",
    "workspace.py:mounted": "the image file in the host-owned .images directory",
    "warm/launch.py:runtime_dir": "the warm processes' own directory, checked to be the user's and 0700",
    "warm/launch.py:socket_path": "installed package files (their mtimes key the warm process)",
    "warm/launch.py:_prefect_install": "installed package files (their mtimes key the warm process)",
    "warm/launch.py:start_warm_process": "the warm process's log in its own 0700 directory",
    "warm/server.py:serve": "the warm process's lock and socket in its own 0700 directory",
    "workspace.py:Workspace._ensure_commit": USER_PATH + " (the source repository)",
    "workspace.py:run_key": USER_PATH + " (the source repository)",
    "record/store.py:AuditStore.run_ids": HOST_STATE,
    "export.py:export_snapshot": USER_PATH + " (the repository the user exports into)",
    "export.py:check_target": USER_PATH + " (the repository the user exports into)",
    "export.py:_check_repository": USER_PATH + " (the repository the user exports into)",
    "workspace.py:Workspace.hand_over": "the worktree's top directory itself (host-owned), chowned without "
                                        "following; everything below goes through WorkspaceFiles.chown_tree",
}


def _is_boundary(receiver: ast.expr) -> bool:
    if isinstance(receiver, ast.Name):
        return receiver.id in BOUNDARY_RECEIVERS
    if isinstance(receiver, ast.Attribute):
        return receiver.attr in BOUNDARY_RECEIVERS
    if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute):
        return receiver.func.attr == "sub" and _is_boundary(receiver.func.value)
    return False


def _operation(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name) and func.id == "open":
        return "open"
    if not isinstance(func, ast.Attribute):
        return None
    if isinstance(func.value, ast.Name) and func.value.id in MODULE_FUNCTIONS:
        names = MODULE_FUNCTIONS[func.value.id]
        return f"{func.value.id}.{func.attr}" if names is None or func.attr in names else None
    if func.attr in PATH_METHODS and not _is_boundary(func.value):
        return f".{func.attr}"
    return None


def host_file_operations() -> dict[str, list[str]]:
    """``module:function`` → the host file operations it calls (boundary.py excluded)."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module == "boundary.py":
            continue

        def visit(node: ast.AST, scope: list[str], module: str = module) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    visit(child, [*scope, child.name])
                    continue
                if isinstance(child, ast.Call) and (op := _operation(child)):
                    key = f"{module}:{'.'.join(scope) or '<module>'}"
                    found.setdefault(key, []).append(f"{op} (line {child.lineno})")
                visit(child, scope)

        visit(ast.parse(path.read_text()), [])
    return found


def test_no_host_file_operation_bypasses_the_workspace_boundary() -> None:
    unlisted = {key: ops for key, ops in host_file_operations().items() if key not in ALLOWED}
    assert unlisted == {}, (
        "host file operations outside prefect_agentic/boundary.py: go through WorkspaceFiles "
        "(ctx.files / ctx.reports), or, for a host-owned path, add the function to ALLOWED with the reason")


def test_every_allowed_entry_is_still_needed() -> None:
    assert sorted(set(ALLOWED) - set(host_file_operations())) == []


def test_the_scan_catches_a_tool_that_opens_a_workspace_path_itself(tmp_path: Path) -> None:
    sample = ast.parse("def run(self, args, ctx):\n    return (ctx.workspace / 'x').read_text()\n")
    calls = [n for n in ast.walk(sample) if isinstance(n, ast.Call)]
    assert [_operation(c) for c in calls if _operation(c)] == [".read_text"]
    through = ast.parse("def run(self, args, ctx):\n    return ctx.reports.sub('a').read_text('x')\n")
    assert [_operation(c) for c in ast.walk(through) if isinstance(c, ast.Call) and _operation(c)] == []


# -- the door's own rules ---------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> tuple[WorkspaceFiles, Path]:
    root, host = tmp_path / "worktree", tmp_path / "host"
    (root / "pkg").mkdir(parents=True)
    host.mkdir()
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (host / "secret").write_text("host secret\n")
    (root / "link-file").symlink_to(host / "secret")
    (root / "link-dir").symlink_to(host)
    return WorkspaceFiles(root), host


@pytest.mark.parametrize("path", ["link-file", "link-dir/secret", "../host/secret", "/etc/hostname"])
def test_reads_never_follow_links_or_leave_the_workspace(tree, path: str) -> None:  # type: ignore[no-untyped-def]
    files, _ = tree
    with pytest.raises(WorkspaceBoundaryError):
        files.read_bytes(path)


def test_writes_replace_a_planted_link_instead_of_writing_through(tree) -> None:  # type: ignore[no-untyped-def]
    files, host = tree
    files.write_text("link-file", "mine\n")
    assert (host / "secret").read_text() == "host secret\n"
    assert files.read_text("link-file") == "mine\n" and not (files.root / "link-file").is_symlink()
    with pytest.raises(WorkspaceBoundaryError, match="symbolic link"):
        files.write_text("link-dir/secret", "x")
    with pytest.raises(WorkspaceBoundaryError, match="symbolic link"):
        files.sub("link-dir").mkdirs("reports")
    assert sorted(os.listdir(host)) == ["secret"]


def test_walk_and_chown_never_enter_or_change_a_link_target(tree) -> None:  # type: ignore[no-untyped-def]
    files, host = tree
    assert list(files.walk()) == [("", ["pkg"], ["link-dir", "link-file"]), ("pkg", [], ["mod.py"])]
    if os.getuid() == 0:
        files.chown_tree("", 4321, 4321)
        assert (host / "secret").stat().st_uid == 0 and host.stat().st_uid == 0
        assert (files.root / "pkg" / "mod.py").stat().st_uid == 4321


def test_mkdirs_gives_the_directories_it_makes_and_only_those_to_the_owner(tree) -> None:  # type: ignore[no-untyped-def]
    files, _ = tree
    owner = (4321, 4322) if os.getuid() == 0 else (os.getuid(), os.getgid())
    files.mkdirs("pkg/reports/step/1", owner=owner)
    for made in ("pkg/reports", "pkg/reports/step", "pkg/reports/step/1"):
        info = (files.root / made).stat()
        assert (info.st_uid, info.st_gid) == owner, made
    assert (files.root / "pkg").stat().st_uid == os.getuid()  # there before: left as it was


def test_chown_leaves_what_the_owner_already_has_untouched(tree) -> None:  # type: ignore[no-untyped-def]
    """A chown changes a file's ctime even when the owner stays; git then re-reads the file at the next checkout."""
    files, _ = tree
    owner = (4321, 4322) if os.getuid() == 0 else (os.getuid(), os.getgid())
    files.chown_tree("", *owner)
    handed = files.root / "pkg" / "mod.py"
    before = handed.stat().st_ctime_ns
    (files.root / "pkg" / "new.py").write_text("y = 2\n")  # ours, as a file git writes on the host
    time.sleep(0.05)  # past the file system's clock granularity, so a chown would show
    files.chown_tree("", *owner)
    assert handed.stat().st_ctime_ns == before
    assert ((files.root / "pkg" / "new.py").stat().st_uid, (files.root / "pkg" / "new.py").stat().st_gid) == owner


def test_walk_chown_and_removal_reach_any_depth_a_step_can_nest(tmp_path: Path) -> None:
    """Deeper than a path may be long and than Python may recurse, with few descriptors held."""
    root = tmp_path / "worktree"
    root.mkdir()
    nest_directories(root, 3000, "bottom")
    files, open_before = WorkspaceFiles(root), len(os.listdir("/proc/self/fd"))
    walked = list(files.walk())
    assert len(walked) == 3001 and walked[-1][2] == ["bottom"] and walked[-1][0].count("/") == 2999
    owner = (4321, 4322) if os.getuid() == 0 else (os.getuid(), os.getgid())
    assert files.chown_tree("", *owner) == (3001 if os.getuid() == 0 else 0)
    files.remove_tree("d")
    assert os.listdir(root) == []
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_reads_are_capped_and_only_of_regular_files(tree) -> None:  # type: ignore[no-untyped-def]
    files, _ = tree
    os.mkfifo(files.root / "fifo")  # a reader would block forever on it
    with pytest.raises(WorkspaceBoundaryError, match="not a regular file"):
        files.read_bytes("fifo")
    (files.root / "big").write_bytes(b"x" * 2048)
    with pytest.raises(WorkspaceBoundaryError, match="over the 1024-byte limit"):
        files.read_bytes("big", limit=1024)


def test_the_git_tool_refuses_a_worktree_with_an_embedded_repository(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "host-command-ran"
    repo = make_repo({"a.txt": "one\n"})
    sub = repo / "sub"
    sub.mkdir()
    commit = ["git", "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qm", "i"]
    for command in (["git", "init", "-q"], ["sh", "-c", "echo data > f"], ["git", "add", "f"], commit,
                    ["git", "config", "core.fsmonitor", f"touch {marker}; false"],
                    ["git", "config", "filter.evil.clean", f"touch {marker}; cat"],
                    ["sh", "-c", "echo '* filter=evil' > .gitattributes; sleep 1; touch f"]):
        subprocess.run(command, cwd=sub, check=True, capture_output=True)
    ctx = ToolContext(sandbox=None, workspace=repo, reports_path=".agentic/reports/g",  # type: ignore[arg-type]
                      step_id="g", base_snapshot=resolve_base(repo, "HEAD"), attempt=1, timeout_seconds=10)
    with pytest.raises(WorkspaceBoundaryError, match="embedded git repository at 'sub/.git'"):
        GitTool().invoke({"op": "status"}, ctx)
    assert not marker.exists()


# -- hostile plan files ------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    (b'id: x\ngoal: "\xff\xfe"\nsteps: []\n', "line 2: the file is not UTF-8 text (byte 0xff at offset 13)"),
    (b"id: x\ngoal: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "nested too deeply to be a plan"),
])
def test_a_hostile_plan_file_is_one_clear_plan_error(tmp_path: Path, content: bytes, message: str) -> None:
    from conftest import agentic_cli

    from prefect_agentic.errors import PlanError
    from prefect_agentic.plan.loader import load_plan

    plan = tmp_path / "plan.yaml"
    plan.write_bytes(content)
    with pytest.raises(PlanError) as caught:
        load_plan(plan)
    assert message in str(caught.value)
    validated = agentic_cli("validate", str(plan))  # as a user meets it: one error, exit 2
    assert validated.returncode == 2, validated.stderr
    assert message in validated.stderr and "Traceback" not in validated.stderr + validated.stdout
