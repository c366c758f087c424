"""Every `agentic` command against a Prefect API that is not there, or is not a Prefect API.

The user sees one line that names the URL and what to do, and exit code 3
("the environment is not ready"), never a traceback. Real CLI subprocesses,
a real closed port and a real HTTP server that is not Prefect.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import EXAMPLES

from prefect_agentic.cli.runs import RunIdError, resolve_run_id

PLAN = str(EXAMPLES / "plans" / "fix-lint-demo.yaml")
RUN = "0b1c"
COMMANDS = [
    ["submit", PLAN],
    ["submit", PLAN, "--wait"],
    ["approvals", "list"],
    ["approvals", "show", RUN],
    ["approve", RUN],
    ["reject", RUN, "--reason", "no"],
    ["request-changes", RUN],
    ["init"],
    ["stats"],
    ["audit", "verify", RUN],
    ["replay", RUN, "--audit-block", "shared"],
    ["export", RUN, "--into", ".", "--policy-block", "strict"],
    ["validate", PLAN, "--policy-block", "strict"],
    ["run", PLAN, "--repo", "."],
    ["draft", "fix lint", "--llm-block", "local"],
]
AGENTIC = str(Path(sys.executable).parent / "agentic")


def _cli(args: list[str], api_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    return subprocess.run([AGENTIC, *args], capture_output=True, text=True, env=env, timeout=300)


SOME_COMMANDS = [COMMANDS[i] for i in (0, 2, 4, 7, 8, 11)]
"""For the wrong-URL case: the check is the same for every command (the unreachable case runs them all)."""


def _all_commands(api_url: str, commands: list[list[str]] = COMMANDS) -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = pool.map(lambda args: _cli(args, api_url), commands)
        return {" ".join(args[:2]): result for args, result in zip(commands, done, strict=True)}


def _assert_one_line(results: dict[str, subprocess.CompletedProcess[str]], *expected: str) -> None:
    for command, result in results.items():
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 3, (command, result.returncode, result.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, result.stderr[-2000:])
        for text in expected:
            assert text in lines[0], (command, lines[0])


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the fixture returns


class _NotPrefect(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"not here\n")

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_prefect() -> Iterator[str]:
    """An HTTP server that answers 404 to everything: a PREFECT_API_URL that points at the wrong thing."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotPrefect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def test_every_command_names_an_unreachable_api_in_one_line_and_exits_3(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/api"
    _assert_one_line(_all_commands(url), f"cannot reach the Prefect API at {url} (connection refused)",
                     "agentic up", "PREFECT_API_URL")


def test_every_command_names_a_url_that_is_not_a_prefect_api_and_exits_3(not_prefect: str) -> None:
    _assert_one_line(_all_commands(not_prefect, SOME_COMMANDS), f"PREFECT_API_URL={not_prefect} does not answer like a "
                     "Prefect API (GET /health: HTTP 404)", "agentic up")


def test_a_url_that_is_not_http_and_a_busy_port_for_up(not_prefect: str) -> None:
    result = _cli(["approvals", "list"], "localhost-4200")
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip() == ("error: PREFECT_API_URL=localhost-4200 is not an http(s) address of a "
                                     "Prefect API; start one with `agentic up`, or set PREFECT_API_URL to "
                                     "your server's API address (e.g. http://127.0.0.1:4200/api)")
    port = not_prefect.split(":")[2].split("/")[0]
    up = _cli(["up", "--port", port], not_prefect)
    lines = [line for line in up.stderr.splitlines() if line.strip()]
    assert up.returncode == 3 and len(lines) == 1, up.stderr
    assert lines[0].startswith("error: the Prefect server exited with"), lines


def test_commands_that_need_no_server_still_work_with_a_wrong_url(closed_port: int) -> None:
    result = _cli(["validate", PLAN], f"http://127.0.0.1:{closed_port}/api")
    assert result.returncode == 0, result.stderr
    assert "valid plan 'fix-lint-demo'" in result.stdout


def test_submit_without_a_server_refuses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    result = subprocess.run([AGENTIC, "submit", PLAN], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip() == (
        "error: no Prefect server configured: a submitted run goes to a server's workers; set "
        "PREFECT_API_URL (or start one with `agentic up`), or run the plan here with `agentic run`")
    assert result.stdout == ""


IDS = ["0b1c2d3e-0000-4000-8000-000000000001", "0b1c2d3e-0000-4000-8000-000000000002",
       "7f00aa11-0000-4000-8000-000000000003"]


def test_short_run_ids_resolve_to_the_one_run_they_start() -> None:
    assert resolve_run_id("7F", IDS, among="runs", hint="h") == IDS[2]
    assert resolve_run_id(IDS[0], IDS, among="runs", hint="h") == IDS[0]
    assert resolve_run_id("0b1c2d3e-0000-4000-8000-000000000002", IDS, among="runs", hint="h") == IDS[1]


def test_ambiguous_and_unknown_short_run_ids_are_clear_errors() -> None:
    with pytest.raises(RunIdError, match=r"^'0b1c' is the start of 2 run ids \(0b1c2d3e-0000…, "
                                         r"0b1c2d3e-0000…\); give more of it$"):
        resolve_run_id("0b1c", IDS, among="runs", hint="h")
    with pytest.raises(RunIdError, match=r"^no run id starts with 'ab' among runs with an audit log "
                                         r"\(see them with x\)$"):
        resolve_run_id("ab", IDS, among="runs with an audit log", hint="see them with x")
