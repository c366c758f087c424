"""The ``mcp`` tool: MCP servers' tools as plan steps, on real Docker and real HTTP.

A stdio server (examples/mcp/stdio_server.py, standard library only) runs inside
the sandbox container; an HTTP server (tests/mcp_servers/http_server.py, the
``mcp`` SDK's MCPServer) listens on 127.0.0.1. Calls go through run_plan like
any step: policy, audit log and the run report see them as they see built-in tools.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES, agentic_cli, git_commit_all
from pydantic import SecretStr

from prefect_agentic.blocks.budget import Budget
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanError, PlanRunFailed
from prefect_agentic.flows.run_plan import run_plan
from prefect_agentic.plan import parse_plan
from prefect_agentic.record.audit import parse_log
from prefect_agentic.record.store import AuditStore
from prefect_agentic.report import RunReport
from prefect_agentic.tools.mcp.client import McpError
from prefect_agentic.tools.mcp.discover import list_server_tools

HERE = Path(__file__).parent
STDIO_SERVER = (EXAMPLES / "mcp" / "stdio_server.py").read_text()
SERVER = ["python3", "stdio_server.py"]


def plan_text(*steps: dict[str, Any]) -> str:
    return yaml.safe_dump({"id": "mcp-test", "goal": "call MCP tools", "steps": list(steps)})


def mcp_step(step_id: str, server: dict[str, Any], tool: str, arguments: dict[str, Any],
             **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "tool": "mcp", "args": {"server": server, "tool": tool, "arguments": arguments},
            **extra}


def run(text: str, repo: Path, image: str, policy: ToolPolicy | None = None,
        budget: Budget | None = None, mode: str = "per_step") -> RunReport:
    state = run_plan(plan=parse_plan(text), repo=str(repo), sandbox=SandboxSettings(image=image, mode=mode),
                     policy=policy, budget=budget, return_state=True)
    outcome = state.result(raise_on_failure=False)
    return outcome.report if isinstance(outcome, PlanRunFailed) else outcome


def steps_of(report: RunReport) -> dict[str, Any]:
    return {step.step_id: step for step in report.steps}


def audit_records(report: RunReport, kind: str, step: str) -> list[Any]:
    records = parse_log(AuditStore().read_log(str(report.flow_run_id)))
    return [r for r in records if r.kind == kind and r.step == step]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A host file the repository links to from where the tool writes its client script."""
    path = tmp_path / "victim.txt"
    path.write_text("host data\n")
    return path


@pytest.fixture
def server_repo(make_repo, victim: Path):  # type: ignore[no-untyped-def]
    repo = make_repo(files={"stdio_server.py": STDIO_SERVER, "notes.txt": "one two three four\n"})
    planted = repo / ".agentic" / "reports" / "count" / "1" / "mcp_client.py"
    planted.parent.mkdir(parents=True)
    planted.symlink_to(victim)
    git_commit_all(repo, "plant a link where the client script goes")
    return repo


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The test HTTP MCP server on a free 127.0.0.1 port; yields its endpoint URL."""
    with serve("http_server.py") as url:
        yield url


@contextmanager
def serve(script: str, *args: str) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(HERE / "mcp_servers" / script), str(port), *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # up to a minute on a loaded machine: wait for the port, not a time
            if process.poll() is not None:
                pytest.fail(f"the test MCP server exited with {process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.usefixtures("prefect_api")
def test_stdio_mcp_tools_run_in_the_sandbox_with_checked_arguments_and_an_audit_record(
        server_repo: Path, victim: Path, sandbox_image: str) -> None:
    report = run(plan_text(
        mcp_step("count", {"command": SERVER}, "word_count", {"path": "notes.txt"}),
        mcp_step("bad-args", {"command": SERVER}, "add", {"a": "one", "b": 2}),
        mcp_step("no-such-tool", {"command": SERVER}, "subtract", {}),
        mcp_step("refused", {"command": SERVER}, "fail", {"reason": "the database is read-only"}),
    ), server_repo, sandbox_image)
    steps = steps_of(report)

    count = steps["count"]
    assert count.status == "completed", count.reason
    assert victim.read_text() == "host data\n"  # the planted link was replaced, not written through
    assert count.output["text"] == "4 words" and count.output["structured"] == {"words": 4}
    assert count.output["server"] == "'python3 stdio_server.py' (stdio, in the sandbox)"
    [verdict] = audit_records(report, "verdict", "count")
    assert verdict.data["output"]["structured"] == {"words": 4}
    [started] = audit_records(report, "attempt_started", "count")
    assert started.data["tool"] == "mcp" and started.data["args"]["tool"] == "word_count"

    assert steps["bad-args"].status == "failed"
    assert ("step 'bad-args', MCP tool 'add': arguments for MCP tool 'add' do not fit its input schema: "
            "a: 'one' is not of type 'integer'") in steps["bad-args"].reason
    assert "the server has no tool 'subtract' (its tools: add, fail, word_count)" in steps["no-such-tool"].reason
    assert steps["refused"].status == "failed"
    assert "MCP tool 'fail' on 'python3 stdio_server.py' (stdio, in the sandbox) reported an error: " \
           "the database is read-only" in steps["refused"].reason
    [finished] = audit_records(report, "attempt_finished", "refused")
    assert finished.data["outcome"] == "fail" and "read-only" in finished.data["error"]


@pytest.mark.usefixtures("prefect_api")
def test_a_hostile_stdio_server_is_cut_off_and_the_host_is_unharmed(
        server_repo: Path, sandbox_image: str) -> None:
    def hostile(mode: str) -> dict[str, Any]:
        return mcp_step(mode, {"command": [*SERVER, "--misbehave", mode]}, "add", {"a": 1, "b": 2},
                        timeout_seconds=15)

    started = time.monotonic()
    # One warm container for all three: what a hostile server leaves running is killed between steps.
    report = run(plan_text(hostile("flood"), hostile("garbage"), hostile("hang")), server_repo, sandbox_image,
                 mode="warm")
    elapsed = time.monotonic() - started
    steps = steps_of(report)
    assert all(step.status == "failed" for step in steps.values()), steps
    assert "sent a message over 4194304 bytes" in steps["flood"].reason
    assert "sent a line that is not JSON: b'this is not JSON-RPC\\n'" in steps["garbage"].reason
    # Whichever comes first under load: the client's own deadline or the sandbox's kill.
    assert ("the server did not answer tools/call in time" in steps["hang"].reason
            or "exceeded the step timeout of 15s and was killed" in steps["hang"].reason)
    assert all(len(step.reason) < 5000 for step in steps.values())
    assert elapsed < 120  # each step is bounded by its own 15 s timeout, not by the server


@pytest.mark.usefixtures("prefect_api")
def test_an_http_mcp_server_on_the_allow_list_is_called_from_the_host(
        http_server: str, make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(files={"README.md": "x\n"})
    policy = ToolPolicy(mcp_servers=[http_server.rsplit("/", 1)[0] + "/*"])
    report = run(plan_text(
        mcp_step("shout", {"url": http_server}, "shout", {"text": "hello"}),
        mcp_step("bad-args", {"url": http_server}, "add", {"a": 1}),
        mcp_step("refused", {"url": http_server}, "refuse", {"reason": "no"}),
    ), repo, sandbox_image, policy=policy)
    steps = steps_of(report)
    assert steps["shout"].status == "completed", steps["shout"].reason
    assert steps["shout"].output["text"] == "HELLO"
    assert steps["shout"].output["structured"] == {"result": "HELLO"}
    assert "step 'bad-args', MCP tool 'add': arguments for MCP tool 'add' do not fit its input schema: " \
           "(arguments): 'b' is a required property" in steps["bad-args"].reason
    assert f"MCP tool 'refuse' on {http_server} reported an error" in steps["refused"].reason
    [verdict] = audit_records(report, "verdict", "shout")
    assert verdict.data["output"]["text"] == "HELLO"


@pytest.mark.usefixtures("prefect_api")
def test_mcp_calls_count_against_the_budget(http_server: str, make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    policy = ToolPolicy(mcp_servers=[http_server])
    report = run(plan_text(
        mcp_step("first", {"url": http_server}, "add", {"a": 1, "b": 2}),
        mcp_step("second", {"url": http_server}, "add", {"a": 3, "b": 4}, depends_on=["first"]),
    ), make_repo(files={"README.md": "x\n"}), sandbox_image, policy=policy, budget=Budget(max_tool_calls=1))
    first, second = report.steps
    assert first.status == "completed" and first.output["text"] == "3"
    assert second.status == "failed" and "tool_calls limit of 1 reached" in second.reason


@pytest.mark.usefixtures("prefect_api")
def test_a_step_secret_is_the_bearer_token_of_an_http_server(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    token = "mcp-token-7f3a9c"
    with serve("http_server.py", token) as url:
        policy = ToolPolicy(mcp_servers=[url], secret_grants={"with-token": ["tracker-token"]})
        secret = {"server": {"url": url, "bearer_secret": "tracker-token"}}
        state = run_plan(
            plan=parse_plan(plan_text(
                {**mcp_step("with-token", secret["server"], "shout", {"text": "hello"}),
                 "secrets": ["tracker-token"]},
                mcp_step("without", {"url": url}, "shout", {"text": "hi"}))),
            repo=str(make_repo(files={"README.md": "x\n"})), sandbox=SandboxSettings(image=sandbox_image),
            policy=policy, secrets={"tracker-token": SecretStr(token)}, return_state=True)
        outcome = state.result(raise_on_failure=False)
    report = outcome.report if isinstance(outcome, PlanRunFailed) else outcome
    steps = steps_of(report)
    assert steps["with-token"].status == "completed", steps["with-token"].reason
    assert steps["with-token"].output["text"] == "HELLO"
    assert not any(token.encode() in line for line in AuditStore().read_log(str(report.flow_run_id)))
    assert steps["without"].status == "failed" and "failed (HTTP 401)" in steps["without"].reason


@pytest.mark.usefixtures("prefect_api")
def test_an_http_mcp_server_not_on_the_allow_list_is_denied(
        http_server: str, make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    text = plan_text(mcp_step("shout", {"url": http_server}, "shout", {"text": "hello"}))
    with pytest.raises(PlanError) as caught:
        parse_plan(text, policy=ToolPolicy())
    assert caught.value.problems == [
        (f"steps[0] 'shout': denied by policy rule 'mcp_servers': MCP server {http_server} is not in "
        "the policy's mcp_servers []")]

    state = run_plan(plan=parse_plan(text), repo=str(make_repo(files={"README.md": "x\n"})),
                     sandbox=SandboxSettings(image=sandbox_image), return_state=True)
    outcome = state.result(raise_on_failure=False)  # run_plan checks again, with the default policy
    assert isinstance(outcome, PlanError) and "'mcp_servers'" in str(outcome)


@pytest.mark.parametrize(("mode", "error"), [
    ("flood", "sent a response over 16777216 bytes"),
    ("silent", "did not answer within 3s"),
])
def test_a_hostile_http_server_is_cut_off(mode: str, error: str) -> None:
    from prefect_agentic.tools.mcp.client import McpError, http_call_tool

    with serve("hostile_http_server.py", mode) as url, pytest.raises(McpError, match=error):
        http_call_tool(url, "add", {"a": 1, "b": 2}, timeout=3)


@pytest.mark.parametrize(("schema", "error"), [
    ({"$ref": "http://127.0.0.1:9/schema.json"}, "has an invalid input schema: Unresolvable: http://127.0.0.1:9"),
    ({"$ref": "#"}, "has an input schema that refers to itself without end"),
    ({"type": "no-such-type"}, "has an invalid input schema"),
])
def test_a_hostile_input_schema_is_an_error_not_a_fetch_or_a_crash(schema: dict[str, Any], error: str) -> None:
    from prefect_agentic.tools.mcp.client import McpError, McpToolInfo, check_arguments

    with pytest.raises(McpError, match=error):
        check_arguments([McpToolInfo(name="t", inputSchema=schema)], "t", {"a": 1})


def test_a_hostile_pattern_in_an_input_schema_cannot_hang_the_host() -> None:
    from prefect_agentic.tools.mcp.client import McpToolInfo, check_arguments

    started = time.monotonic()
    schema = {"properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}
    check_arguments([McpToolInfo(name="t", inputSchema=schema)], "t", {"a": "a" * 64 + "!"})
    assert time.monotonic() - started < 5  # backtracking over 64 characters would take ages


def test_mcp_approval_and_denial_follow_the_operation_rules() -> None:
    from prefect_agentic.policy import approval_rules
    from prefect_agentic.tools.registry import default_registry

    plan = parse_plan(plan_text(mcp_step("push", {"command": SERVER}, "push", {})))
    assert approval_rules(ToolPolicy(), plan.steps[0], default_registry()) == ["operation mcp:push"]
    with pytest.raises(PlanError) as caught:
        parse_plan(plan_text(mcp_step("add", {"command": SERVER}, "add", {"a": 1, "b": 2})),
                   policy=ToolPolicy(denied_operations=["mcp:add"]))
    assert "denied by policy rule 'denied_operations:mcp:add'" in caught.value.problems[0]
    with pytest.raises(PlanError) as caught:
        parse_plan(plan_text(mcp_step("wipe", {"command": ["rm", "-rf", "/"]}, "x", {})), policy=ToolPolicy())
    assert "args: denied by policy rule 'rm-rf-root'" in caught.value.problems[0]


def test_agentic_tools_lists_the_tools_of_an_http_mcp_server(http_server: str) -> None:
    result = agentic_cli("tools", "--mcp", http_server)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[lines.index("shout  The text in capitals.") + 1] == (
        '  input: {"properties": {"text": {"title": "Text", "type": "string"}}, "required": ["text"], '
        '"title": "shoutArguments", "type": "object"}')


def test_agentic_tools_lists_the_tools_of_a_stdio_mcp_server_in_a_sandbox(
        server_repo: Path, sandbox_image: str) -> None:
    result = agentic_cli("tools", "--mcp", "python3 stdio_server.py", "--repo", str(server_repo),
                         "--image", sandbox_image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        "add  Add two integers.",
        ('  input: {"additionalProperties": false, "properties": {"a": {"type": "integer"}, '
        '"b": {"type": "integer"}}, "required": ["a", "b"], "type": "object"}')]
    missing = agentic_cli("tools", "--mcp", "python3 missing.py", "--repo", str(server_repo),
                          "--image", sandbox_image)
    assert missing.returncode == 1
    assert "can't open file '/workspace/missing.py'" in missing.stderr


def test_discovery_holds_a_stdio_server_to_the_workspace_size_limit(server_repo: Path, sandbox_image: str) -> None:
    """The server's commands write a workspace with the run's limit, as a step's would (not the host's /tmp)."""
    server = "sh -c 'head -c 80M /dev/zero > .agentic/big || exit 7; exec python3 stdio_server.py'"
    with pytest.raises(McpError) as stopped:
        list_server_tools(server, repo=server_repo, timeout=60,
                          settings=SandboxSettings(image=sandbox_image, workspace_size="64m"))
    assert "No space left on device" in str(stopped.value)
    unlimited = list_server_tools(server, repo=server_repo, timeout=60,  # the explicit opt-out
                                  settings=SandboxSettings(image=sandbox_image, workspace_size=None))
    assert [tool.name for tool in unlimited][:1] == ["add"]


def test_discovery_never_writes_through_a_link_the_repository_plants(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image: str, tmp_path: Path) -> None:
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    repo = make_repo(files={"stdio_server.py": STDIO_SERVER})
    (repo / ".agentic").symlink_to(host_dir)  # where discovery writes its client script
    git_commit_all(repo, "plant a link in place of .agentic")
    result = agentic_cli("tools", "--mcp", "python3 stdio_server.py", "--repo", str(repo), "--image", sandbox_image)
    assert list(host_dir.iterdir()) == []  # nothing written on the host through the link
    assert result.returncode != 0 and ".agentic" in result.stderr, result.stdout + result.stderr
