"""The built-in tools against real pytest, ruff and git, plus the tool registry."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.errors import ToolError
from prefect_agentic.sandbox.runner import open_sandbox
from prefect_agentic.tools.base import Tool, ToolContext, ToolOutput
from prefect_agentic.tools.git import GitTool
from prefect_agentic.tools.pytest import PytestTool, parse_junit_xml
from prefect_agentic.tools.registry import ENTRY_POINT_GROUP, ToolRegistry, default_registry
from prefect_agentic.tools.ruff import RuffTool
from prefect_agentic.workspace import Workspace, resolve_base

TESTS = {
    "tests/test_mixed.py": textwrap.dedent("""
        import pytest

        def test_ok():
            assert True

        def test_bad():
            assert 1 == 2

        def test_skipped():
            pytest.importorskip("a_module_nobody_installed")

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture failed")

        def test_error(broken):
            pass

        class TestGroup:
            def test_inner_bad(self):
                assert False
    """),
}


@pytest.fixture
def context(make_repo, sandbox_image: str):  # type: ignore[no-untyped-def]
    def make(files: dict[str, str], step_id: str = "s") -> ToolContext:
        repo = make_repo(files)
        base = resolve_base(repo, "HEAD")
        workspace = Workspace(repo, SandboxSettings().workspace_owner())
        workspace.hand_over()  # as a run does
        workspace.prepare_reports(f".agentic/reports/{step_id}")
        sandbox = open_sandbox(SandboxSettings(image=sandbox_image), repo, f"tools-{os.getpid()}")
        return ToolContext(sandbox=sandbox, workspace=repo, reports_path=f".agentic/reports/{step_id}",
                           step_id=step_id, base_snapshot=base,
                           attempt=1, timeout_seconds=120)
    return make


def test_pytest_counts_and_failing_ids(context) -> None:  # type: ignore[no-untyped-def]
    out = PytestTool().invoke({"paths": ["tests"]}, context(TESTS))
    assert (out.passed, out.failed, out.errors, out.skipped, out.tests_failed) == (1, 2, 1, 1, 3)
    assert sorted(out.failing_tests) == [
        "tests/test_mixed.py::TestGroup::test_inner_bad",
        "tests/test_mixed.py::test_bad",
        "tests/test_mixed.py::test_error",
    ]
    assert out.exit_code == 1


def test_pytest_keyword_selects(context) -> None:  # type: ignore[no-untyped-def]
    out = PytestTool().invoke({"paths": ["tests"], "keyword": "test_ok"}, context(TESTS))
    assert (out.passed, out.tests_failed) == (1, 0)


def test_pytest_collecting_nothing_is_an_error_unless_allowed(context) -> None:  # type: ignore[no-untyped-def]
    ctx = context({"README": "no tests here\n"})
    with pytest.raises(ToolError, match="collected no tests"):
        PytestTool().invoke({}, ctx)
    assert PytestTool().invoke({"allow_no_tests": True}, ctx).passed == 0


def test_pytest_usage_error_is_an_error(context) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ToolError, match="usage error"):
        PytestTool().invoke({"extra_args": ["--no-such-option"]}, context(TESTS))


def test_junit_parsing_of_a_host_pytest_report(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text(TESTS["tests/test_mixed.py"])
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "-o", "junit_family=xunit1", f"--junitxml={tmp_path / 'r.xml'}", "test_a.py"],
                   cwd=tmp_path, capture_output=True)
    parsed = parse_junit_xml((tmp_path / "r.xml").read_bytes())
    assert parsed["tests_failed"] == 3 and "test_a.py::TestGroup::test_inner_bad" in parsed["failing_tests"]


LINTY = {"pkg/m.py": "import os\nimport sys\nx = f'plain'\n", "pyproject.toml": "[tool.ruff.lint]\nselect = ['F']\n"}


def test_ruff_check_counts_violations_by_rule(context) -> None:  # type: ignore[no-untyped-def]
    out = RuffTool().invoke({"mode": "check"}, context(LINTY))
    assert out.lint_violations == 3 and out.by_rule == {"F401": 2, "F541": 1}


def test_ruff_fix_reports_what_remains(context) -> None:  # type: ignore[no-untyped-def]
    ctx = context({**LINTY, "pkg/n.py": "def f():\n    return undefined_name\n"})
    out = RuffTool().invoke({"mode": "fix"}, ctx)
    assert out.by_rule == {"F821": 1}
    assert (ctx.workspace / "pkg" / "m.py").read_text() == "x = 'plain'\n"


def test_ruff_format_and_format_check(context) -> None:  # type: ignore[no-untyped-def]
    ctx = context({"a.py": "x=1\n", "b.py": "y  =  2\n", "c.py": "z = 3\n"})
    assert RuffTool().invoke({"mode": "format-check"}, ctx).lint_violations == 2
    assert RuffTool().invoke({"mode": "format"}, ctx).files_reformatted == 2
    assert (ctx.workspace / "a.py").read_text() == "x = 1\n"


def test_ruff_crash_is_an_error(context) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ToolError, match="ruff check failed"):
        RuffTool().invoke({"mode": "check", "select": ["NOT-A-RULE"]}, context(LINTY))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_git_status_diff_branch_commit(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"a.txt": "one\n"})
    base = resolve_base(repo, "HEAD")
    git(repo, "checkout", "-q", "--detach")
    ctx = ToolContext(sandbox=None, workspace=repo, reports_path=".agentic/reports/g",  # type: ignore[arg-type]
                      step_id="g", base_snapshot=base, attempt=1, timeout_seconds=10)
    (repo / "a.txt").write_text("two\n")
    (repo / "b.txt").write_text("new\n")
    tool = GitTool()
    assert tool.invoke({"op": "status"}, ctx).changed_files == ["a.txt", "b.txt"]
    assert "+two" in tool.invoke({"op": "diff"}, ctx).diff
    out = tool.invoke({"op": "commit", "message": "Fix things", "branch": "agentic/fix"}, ctx)
    assert git(repo, "rev-parse", "agentic/fix").strip() == out.commit
    assert git(repo, "log", "-1", "--format=%an|%s|%cI", out.commit).strip() == \
        "prefect-agentic|Fix things|2026-01-01T00:00:00+00:00"  # the parent's timestamp: deterministic
    assert tool.invoke({"op": "branch", "branch": "agentic/other"}, ctx).branch == "agentic/other"
    with pytest.raises(ToolError, match="nothing to commit"):
        tool.invoke({"op": "commit", "message": "again"}, ctx)


def test_registry_names_known_tools_on_a_miss() -> None:
    with pytest.raises(Exception, match=r"unknown tool 'nope' \(known tools: git, pytest, ruff, shell\)"):
        ToolRegistry([GitTool, PytestTool, RuffTool, default_registry().get("shell")]).get("nope")


def test_third_party_tools_come_in_through_the_entry_point(tmp_path: Path) -> None:
    """A real installed distribution (a .dist-info on sys.path) that declares a tool."""
    (tmp_path / "echo_tool.py").write_text(textwrap.dedent("""
        from prefect_agentic.tools.base import Tool, ToolInput, ToolOutput

        class EchoTool(Tool):
            name = "echo"
            version = "2.0.0"
            description = "echo"
            Input = ToolInput
            Output = ToolOutput

            def run(self, args, ctx):
                return {"exit_code": 0}
    """))
    info = tmp_path / "echo_tool-2.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-tool\nVersion: 2.0.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\necho = echo_tool:EchoTool\n")
    sys.path.insert(0, str(tmp_path))
    default_registry.cache_clear()
    try:
        tool = default_registry().get("echo")
        assert issubclass(tool, Tool) and tool.version == "2.0.0"
        assert issubclass(tool.Output, ToolOutput)
    finally:
        sys.path.remove(str(tmp_path))
        default_registry.cache_clear()


def test_a_run_imports_only_the_tools_its_plan_names() -> None:
    """Every flow-run process of a deployment loads the registry: it pays for the tools it uses."""
    probe = ("import sys; from prefect_agentic.tools.registry import default_registry; "
             "registry = default_registry(); before = {m for m in sys.modules if m.startswith('prefect_agentic.tools.')}; "
             "assert registry.get('shell').name == 'shell' and 'pytest' in registry; "
             "after = {m for m in sys.modules if m.startswith('prefect_agentic.tools.')}; "
             "print(','.join(sorted(m.rsplit('.', 1)[1] for m in after - before))); "
             "print(len(registry.names()))")
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported, every = done.stdout.split()
    assert {"shell", "pytest"} <= set(imported.split(",")) <= {"shell", "pytest", "pip"}  # pytest installs through the pip tool
    assert int(every) >= 19  # listing them imports the rest


def test_every_entry_point_of_the_pack_is_named_as_its_tool() -> None:
    """The pack's own entry points are imported by name when a plan asks for it; a misnamed one is an error."""
    own = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.value.startswith("prefect_agentic.")]
    assert len(own) >= 19
    assert [ep.name for ep in own if ep.load().name != ep.name] == []
    misnamed = EntryPoint("lint-v1", "prefect_agentic.tools.ruff:RuffTool", ENTRY_POINT_GROUP)
    with pytest.raises(TypeError, match="entry point 'lint-v1' .* is the tool 'ruff'"):
        ToolRegistry(deferred=[misnamed]).get("lint-v1")


def test_a_deferred_tool_counts_when_another_version_is_registered() -> None:
    """Registering a name resolves its deferred entry point first: the newest version still wins."""
    shell = EntryPoint("shell", "prefect_agentic.tools.shell:ShellTool", ENTRY_POINT_GROUP)

    class OldShell(shell.load()):  # type: ignore[misc]
        version = "0.0.1"

    registry = ToolRegistry([OldShell], deferred=[shell])
    assert registry.versions("shell") == ["0.0.1", shell.load().version]
    assert registry.get("shell") is shell.load()


def test_threads_asking_for_a_deferred_tool_at_once_all_find_it() -> None:
    """Parallel steps share one registry: whichever thread imports the tool, every thread gets it."""
    registry = ToolRegistry(deferred=[EntryPoint("git", "prefect_agentic.tools.git:GitTool", ENTRY_POINT_GROUP)])
    start = threading.Barrier(8)

    def ask() -> type[Tool]:
        start.wait()
        return registry.get("git")

    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda _: ask(), range(8)))
    assert found == [GitTool] * 8


def test_loading_the_flow_and_every_tool_leaves_the_model_layer_unimported() -> None:
    """Every run loads the registry; only a step that asks a model should pay for pydantic-ai."""
    probe = ("import sys; from prefect_agentic.flows.run_plan import run_plan; "
             "from prefect_agentic.tools.registry import default_registry; "
             "assert 'propose_patch' in default_registry(); "
             "print(sorted(m for m in ('pydantic_ai', 'openai') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
