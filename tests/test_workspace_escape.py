"""The workspace is hostile: attacks on the *host side* of a run, through real plan runs.

Each attack is a small plan run on real Docker with real git: a step's
commands plant something in the worktree (a link in place of a report
directory, a report file or a file a tool edits; an embedded git repository
whose configuration names a command; a file name that is not UTF-8; a secret
written into a file) and the host's next operation must not follow, execute
or store it. Every test here fails on the code before the workspace boundary
(``prefect_agentic.boundary``) existed. docs/security.md lists them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanRunFailed, WorkspaceSizeLimitError
from prefect_agentic.flows.run_plan import RunReport, StepReport, run_plan
from prefect_agentic.plan import parse_plan
from prefect_agentic.record.audit import parse_log
from prefect_agentic.record.store import AuditStore
from prefect_agentic.secrets import REDACTED
from prefect_agentic.workspace import mounted, size_image

pytestmark = pytest.mark.usefixtures("prefect_api")

TOKEN = "tok-3f9a1c77e2b4d5"  # a fake secret the attack writes into a file


@pytest.fixture(params=["runc", "runsc"])
def runtime(request: pytest.FixtureRequest) -> str:
    """Every attack runs under Docker's default runtime and under gVisor (`scripts/setup.sh runsc`)."""
    return str(request.param)


def run(repo: Path, image: str, steps: list[dict[str, Any]], *, runtime: str, policy: ToolPolicy | None = None,
        secrets: dict[str, SecretStr] | None = None, user: str | None = None) -> RunReport:
    plan = parse_plan(yaml.safe_dump({"id": "hostile", "goal": "attack the host side", "steps": steps}),
                      policy=policy)
    state = run_plan(plan=plan, repo=str(repo), sandbox=SandboxSettings(image=image, user=user, runtime=runtime), policy=policy,
                     secrets=secrets, return_state=True, fresh=True)
    outcome = state.result(raise_on_failure=False)
    return outcome.report if isinstance(outcome, PlanRunFailed) else outcome


def step(report: RunReport, step_id: str) -> StepReport:
    return next(s for s in report.steps if s.step_id == step_id)


def shell(step_id: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "tool": "shell", "args": {"command": ["sh", "-c", script]}, **extra}


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory no run may touch, with a root-only file that looks like a pytest report."""
    place = tmp_path / "host-only"
    place.mkdir()
    secret = place / "secret.xml"
    secret.write_text('<testsuite><testcase classname="HOSTSECRET" name="leaked"><failure/></testcase>'
                      "</testsuite>\n")
    secret.chmod(0o600)
    (place / "requirements.txt").write_text("requests==1.0\n")
    return place


def test_a_link_in_place_of_the_report_directory_is_not_followed(make_repo, sandbox_image: str, runtime: str,
                                                                 host: Path) -> None:
    repo = make_repo({"README": "x\n"})
    report = run(repo, sandbox_image, runtime=runtime, steps=[
        shell("plant", f"mkdir -p .agentic/reports/victim && ln -s {host} .agentic/reports/victim/1"),
        shell("victim", "echo ran", depends_on=["plant"]),
    ])
    for entry in host.iterdir():  # the host directory's contents were not handed to the sandbox uid
        assert entry.lstat().st_uid == os.getuid(), entry
    assert step(report, "victim").status.value == "completed"


def test_a_report_file_swapped_for_a_link_is_refused_not_read(make_repo, sandbox_image: str, runtime: str,
                                                              host: Path) -> None:
    # The suite under test is attacker-controlled: after pytest wrote its report,
    # a hook replaces the report with a link to a root-only host file.
    conftest = ("import os\n"
                "def pytest_unconfigure(config):\n"
                "    path = config.option.xmlpath\n"
                "    os.remove(path)\n"
                f"    os.symlink({str(host / 'secret.xml')!r}, path)\n")
    repo = make_repo({"conftest.py": conftest, "test_ok.py": "def test_ok():\n    assert True\n"})
    report = run(repo, sandbox_image, runtime=runtime, steps=[{"id": "tests", "tool": "pytest", "args": {"paths": ["test_ok.py"]}}])
    tests = step(report, "tests")
    assert tests.status.value == "failed"
    assert "symbolic link" in (tests.reason or "")
    assert "HOSTSECRET" not in report.model_dump_json()


def test_a_file_a_tool_edits_on_the_host_swapped_for_a_link_is_not_written_through(
        make_repo, sandbox_image: str, runtime: str, host: Path) -> None:
    repo = make_repo({"requirements.txt": "requests==2.0\n"})
    report = run(repo, sandbox_image, runtime=runtime, steps=[
        shell("plant", f"rm requirements.txt && ln -s {host / 'requirements.txt'} requirements.txt",
              writes_workspace=True),
        {"id": "pin", "tool": "pip", "depends_on": ["plant"], "writes_workspace": True,
         "args": {"op": "pin", "package": "requests", "version": "9.9"}},
    ])
    assert (host / "requirements.txt").read_text() == "requests==1.0\n"
    pin = step(report, "pin")
    assert pin.status.value == "failed" and "not a regular file" in (pin.reason or "")


EMBEDDED_REPO = """
set -e
git init -q sub && cd sub
echo data > file && git add file && git -c user.name=a -c user.email=a@a commit -qm init
git config core.fsmonitor "touch {marker}; false"
git config filter.evil.clean "touch {marker}; cat"
echo '* filter=evil' > .gitattributes
sleep 1 && touch file
"""


def test_an_embedded_repository_never_makes_host_git_run_its_commands(make_repo, sandbox_image: str, runtime: str,
                                                                     tmp_path: Path) -> None:
    # The sandbox runs as the caller's own uid (what a non-root install does), so git's
    # safe.directory ownership check does not stop host git from obeying the embedded config.
    marker = tmp_path / "host-command-ran"
    repo = make_repo({"README": "x\n"})
    report = run(repo, sandbox_image, runtime=runtime, steps=[shell("embed", EMBEDDED_REPO.format(marker=marker), writes_workspace=True)],
                 user=f"{os.getuid()}:{os.getgid()}")
    assert not marker.exists(), "a command named by the workspace ran on the host (snapshot)"
    embed = step(report, "embed")
    assert embed.status.value == "failed"
    assert "embedded git repository at 'sub/.git'" in (embed.reason or "")


UNIGNORE_REPORTS = """printf '!/.agentic/\\n' > .gitignore
mkdir -p .agentic && echo planted > .agentic/planted
"""


def test_a_gitignore_cannot_bring_the_report_directory_or_a_repository_in_it_into_host_git(
        make_repo, sandbox_image: str, runtime: str, tmp_path: Path) -> None:
    # .git/info/exclude keeps .agentic out of snapshots only until the worktree's own
    # .gitignore re-includes it; host git must still never add it, nor enter a repository in it.
    marker = tmp_path / "host-command-ran"
    repo = make_repo({"README": "x\n"})
    embed = EMBEDDED_REPO.replace("git init -q sub && cd sub", "git init -q .agentic/evil && cd .agentic/evil")
    report = run(repo, sandbox_image, runtime=runtime, user=f"{os.getuid()}:{os.getgid()}", steps=[
        shell("unignore", UNIGNORE_REPORTS, writes_workspace=True),
        shell("embed", UNIGNORE_REPORTS + embed.format(marker=marker), writes_workspace=True,
              depends_on=["unignore"]),
    ])
    unignore = step(report, "unignore")
    assert unignore.status.value == "completed", unignore.reason
    with mounted(Path(report.workspace)):
        names = subprocess.run(["git", "ls-tree", "-r", "--name-only", str(unignore.snapshot)],
                               cwd=report.workspace, capture_output=True, text=True, check=True).stdout.split()
    assert ".gitignore" in names and not [n for n in names if n.startswith(".agentic")], names
    assert not marker.exists(), "a command named by the workspace ran on the host (snapshot)"
    assert "embedded git repository at '.agentic/evil/.git'" in (step(report, "embed").reason or "")


def test_a_file_name_of_any_bytes_is_snapshotted_and_shown_escaped(make_repo, sandbox_image: str, runtime: str) -> None:
    repo = make_repo({"README": "x\n"})
    report = run(repo, sandbox_image, runtime=runtime, steps=[
        shell("odd", "printf 'x\\n' > \"$(printf 'bad\\377name\\001.txt')\"", writes_workspace=True),
    ])
    odd = step(report, "odd")
    assert odd.status.value == "completed", odd.reason
    assert odd.diff_stat == "1 files, +1 -0"
    with mounted(Path(report.workspace)):  # the run unmounted its workspace when it ended
        names = subprocess.run(["git", "ls-tree", "-z", "--name-only", str(odd.snapshot)], cwd=report.workspace,
                               capture_output=True, check=True).stdout.split(b"\0")
    assert b"bad\xffname\x01.txt" in names  # the snapshot holds the name's exact bytes


NEST = """python3 -c "
import os
for _ in range(3000):
    os.mkdir('d')
    os.chdir('d')
open('left', 'w').close()
" && echo nested"""


def test_directories_nested_deeper_than_a_path_are_removed_before_the_next_step(make_repo, sandbox_image: str,
                                                                                runtime: str) -> None:
    # Deeper than git can reach (its clean failed) and than host code could recurse.
    repo = make_repo({"README": "x\n"})
    report = run(repo, sandbox_image, runtime=runtime, steps=[
        shell("nest", NEST, writes_workspace=True),
        shell("next", "test ! -e d && echo clean", depends_on=["nest"]),
    ])
    nest, after = step(report, "nest"), step(report, "next")
    assert nest.status.value == "completed", nest.reason
    assert after.status.value == "completed", after.reason
    assert nest.snapshot == after.snapshot  # nothing git could reach changed


HIDING_ATTRIBUTES = """printf '* -diff ident\\n' > .gitattributes
echo changed-line-7f3e > README && printf 'kept $Id: as written $\\n' > kept.txt
"""


def test_a_gitattributes_file_cannot_hide_a_change_from_the_audit_or_alter_what_is_stored(
        make_repo, sandbox_image: str, runtime: str) -> None:
    repo = make_repo({"README": "x\n"})
    report = run(repo, sandbox_image, runtime=runtime,
                 steps=[shell("hide", HIDING_ATTRIBUTES, writes_workspace=True)])
    hide = step(report, "hide")
    assert hide.status.value == "completed", hide.reason
    assert hide.diff_stat == "3 files, +3 -1"  # `-diff` would make them binary: +0 -0
    audit = [p for p in (Path(os.environ["AGENTIC_HOME"]) / "audit").rglob("*") if p.is_file()]
    assert any(b"+changed-line-7f3e" in p.read_bytes() for p in audit), "the change is missing from the stored diff"
    with mounted(Path(report.workspace)):
        kept = subprocess.run(["git", "cat-file", "blob", f"{hide.snapshot}:kept.txt"], cwd=report.workspace,
                              capture_output=True, check=True).stdout
    assert kept == b"kept $Id: as written $\n"  # `ident` would have stored `$Id$`


def test_a_secret_written_into_a_file_is_not_stored_in_clear(make_repo, sandbox_image: str, runtime: str) -> None:
    repo = make_repo({"README": "x\n"})
    policy = ToolPolicy(secret_grants={"leak": ["api-token"]})
    report = run(repo, sandbox_image, runtime=runtime, steps=[
        shell("leak", 'echo "token=$API_TOKEN" > leaked.txt && echo "$API_TOKEN" > "name-$API_TOKEN"',
              writes_workspace=True, secrets=["api-token"]),
    ], policy=policy, secrets={"api-token": SecretStr(TOKEN)})
    leak = step(report, "leak")
    assert leak.status.value == "completed", leak.reason
    assert TOKEN not in report.model_dump_json()
    stored = [p for p in Path(os.environ["AGENTIC_HOME"]).rglob("*")
              if p.is_file() and "workspaces" not in p.parts and TOKEN.encode() in p.read_bytes()]
    assert stored == []
    audit = [p for p in (Path(os.environ["AGENTIC_HOME"]) / "audit").rglob("*") if p.is_file()]
    assert any(REDACTED.encode() in p.read_bytes() for p in audit), "the diff was not stored redacted"


def test_report_json_from_the_workspace_is_capped(make_repo, sandbox_image: str, runtime: str) -> None:
    # A 40 MB "report" (over the 32 MiB read cap) fails the step, it is never loaded whole.
    conftest = ("def pytest_unconfigure(config):\n"
                "    with open(config.option.xmlpath, 'wb') as f:\n"
                "        f.truncate(40 * 1024 * 1024)\n")
    repo = make_repo({"conftest.py": conftest, "test_ok.py": "def test_ok():\n    assert True\n"})
    report = run(repo, sandbox_image, runtime=runtime, steps=[{"id": "tests", "tool": "pytest", "args": {"paths": ["test_ok.py"]}}])
    tests = step(report, "tests")
    assert tests.status.value == "failed" and "limit for files the host reads" in (tests.reason or "")
    assert json.loads(report.model_dump_json())  # the report itself stays small and valid


def test_a_warm_container_keeps_no_process_a_step_left_behind(make_repo, sandbox_image: str, runtime: str) -> None:
    import time

    from prefect_agentic.sandbox.runner import open_sandbox

    repo = make_repo({"README": "x\n"})
    box = open_sandbox(SandboxSettings(image=sandbox_image, mode="warm", runtime=runtime), repo, f"settle-{os.getpid()}")
    try:
        started = box.run(["sh", "-c", "(sleep 2; echo late > late.txt) >/dev/null 2>&1 & echo started"],
                          timeout=30)
        assert started.exit_code == 0 and started.stdout == "started\n"
        time.sleep(4)  # well past the leftover's write; nothing may have written it
        assert not (repo / "late.txt").exists()
        assert box.run(["sh", "-c", "echo next"], timeout=30).stdout == "next\n"  # the container still serves
        gvisor = "Starting gVisor" in box.run(["dmesg"], timeout=30).stdout
        assert gvisor == (runtime == "runsc")  # the runtime asked for is the one that ran
    finally:
        box.close()


def test_a_step_writing_past_the_workspace_size_limit_fails_naming_it(make_repo, sandbox_image: str, runtime: str) -> None:
    repo = make_repo({"README": "x\n"})
    plan = parse_plan(yaml.safe_dump({"id": "fill", "goal": "fill the disk", "steps": [
        shell("fill", "head -c 200M /dev/zero > big || true; echo done", writes_workspace=True)]}))
    state = run_plan(plan=plan, repo=str(repo), sandbox=SandboxSettings(image=sandbox_image, workspace_size="64m", runtime=runtime),
                     return_state=True, fresh=True)
    outcome = state.result(raise_on_failure=False)
    assert isinstance(outcome, PlanRunFailed)
    fill = step(outcome.report, "fill")
    assert fill.status.value == "failed"
    assert "its size limit (64m) was reached" in (fill.reason or "")
    image = size_image(Path(outcome.report.workspace))
    assert image.stat().st_blocks * 512 <= 64 * 1024 * 1024  # the host disk holds no more than the limit
    assert not os.path.ismount(outcome.report.workspace)  # the run gave its mount (and loop device) back


def run_limited(repo: Path, image: str, runtime: str, steps: list[dict[str, Any]],
                workspace_size: str | None) -> RunReport | BaseException:
    """A run of ``steps`` with this workspace size limit: its report, or what stopped it before any step."""
    plan = parse_plan(yaml.safe_dump({"id": "limited", "goal": "write the workspace", "steps": steps}))
    state = run_plan(plan=plan, repo=str(repo), return_state=True, fresh=True,
                     sandbox=SandboxSettings(image=image, workspace_size=workspace_size, runtime=runtime))
    outcome = state.result(raise_on_failure=False)
    return outcome.report if isinstance(outcome, PlanRunFailed) else outcome


def test_an_opted_out_run_is_audited_and_a_limit_that_cannot_be_enforced_runs_no_step(
        make_repo, sandbox_image: str, runtime: str, caplog: pytest.LogCaptureFixture) -> None:
    repo = make_repo({"README": "x\n"})
    first = run_limited(repo, sandbox_image, runtime, [shell("write", "echo a > a.txt", writes_workspace=True)],
                        workspace_size=None)  # the explicit opt-out: no limit
    assert isinstance(first, RunReport) and first.ok, first
    records = parse_log(AuditStore().read_log(str(first.flow_run_id)))
    started = next(r for r in records if r.kind == "run_started")
    assert started.data["workspace_limit"] == {"size": None, "opted_out": True}
    assert (f"Workspace {first.workspace} has no size limit (SandboxSettings.workspace_size is empty: opted out)"
            in caplog.text)
    assert not size_image(Path(first.workspace)).exists()

    # The same run asking for a limit: its workspace was made without one, so no mount can limit it now.
    second = run_limited(repo, sandbox_image, runtime, [
        shell("write", "echo a > a.txt", writes_workspace=True),
        shell("more", "echo b > b.txt", writes_workspace=True, depends_on=["write"])], workspace_size="64m")
    assert isinstance(second, WorkspaceSizeLimitError), second
    assert f"the workspace size limit 64m cannot be enforced for {first.workspace}" in str(second)
    assert "already holds a workspace made without a size limit" in str(second)
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)"], cwd=first.workspace,
                          capture_output=True, text=True, check=True).stdout.split()
    assert "refs/agentic/snapshots/limited/more" not in refs  # no step ran


# Fills the workspace but for 3 MiB: room the step's own file fits in, its snapshot's copy (git's object
# of incompressible bytes) does not.
FILL_BUT_3M = """python3 -c "
import os
room = os.statvfs('.').f_bavail * os.statvfs('.').f_frsize
with open('big', 'wb') as out:
    for _ in range(room // 2**20 - 3):
        out.write(os.urandom(2**20))
" """


def test_a_step_that_leaves_no_room_for_its_snapshot_fails_naming_the_limit(make_repo, sandbox_image: str,
                                                                           runtime: str) -> None:
    repo = make_repo({"README": "x\n"})
    report = run_limited(repo, sandbox_image, runtime, [shell("fill", FILL_BUT_3M, writes_workspace=True)],
                         workspace_size="64m")
    assert isinstance(report, RunReport), report
    fill = step(report, "fill")
    assert fill.status.value == "failed"
    assert ("step 'fill' filled the workspace: its size limit (64m) was reached and the host could not "
            "write its snapshot (No space left on device)") in (fill.reason or ""), fill.reason
    assert size_image(Path(report.workspace)).stat().st_blocks * 512 <= 64 * 1024 * 1024


def test_a_workspace_left_full_under_its_report_directory_fails_the_next_step_naming_the_limit(
        make_repo, sandbox_image: str, runtime: str) -> None:
    """``.agentic`` survives the reset before a step, so what a step left there still fills the workspace."""
    repo = make_repo({"README": "x\n"})
    first = run_limited(repo, sandbox_image, runtime, [shell("fill", "head -c 100M /dev/zero > .agentic/junk; true")],
                        workspace_size="64m")
    assert isinstance(first, RunReport), first
    assert "step 'fill' filled the workspace: its size limit (64m) was reached" in (step(first, "fill").reason or "")
    second = run_limited(repo, sandbox_image, runtime, [shell("next", "echo next")], workspace_size="64m")
    assert isinstance(second, RunReport), second
    following = step(second, "next")
    assert following.status.value == "failed"
    assert "step 'next' found the workspace full before it ran: its size limit (64m) was reached" in (
        following.reason or ""), following.reason
    assert "remove the run's workspace and its image" in (following.reason or "")  # a larger limit would not do


def test_removing_a_throwaway_workspace_never_follows_a_link_a_step_planted(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A chaos campaign removes each trial's workspace (``remove_workspace``); its steps could have left
    # links there to anything on the host, at the top and deep down.
    from prefect_agentic.workspace import Workspace, remove_workspace, resolve_base, run_key

    repo = make_repo(files={"README.md": "x\n"})
    base = resolve_base(repo, "HEAD")
    path = tmp_path / "workspaces" / run_key("p", repo, base)
    workspace = Workspace.prepare(repo, base, path, size=None)
    victim = tmp_path / "victim"
    (victim / "inner").mkdir(parents=True)
    (victim / "inner" / "keep.txt").write_text("host file\n")
    (workspace.path / "to-dir").symlink_to(victim)
    (workspace.path / "deep" / "er").mkdir(parents=True)
    (workspace.path / "deep" / "er" / "to-inner").symlink_to(victim / "inner")
    (workspace.path / "deep" / "to-file").symlink_to(victim / "inner" / "keep.txt")
    assert remove_workspace(path) is None
    assert not path.exists()
    assert (victim / "inner" / "keep.txt").read_text() == "host file\n"
