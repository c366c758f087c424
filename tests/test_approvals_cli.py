"""Answering gates from a shell: `agentic approvals list/show`, `approve`, `reject` against a real
Prefect server, and the question an interactive `agentic run` asks at its terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import agentic_cli
from gate_helpers import TWO_GATES, waiting_at_gates
from prefect.client.orchestration import get_client

from prefect_agentic.blocks import GateDefaults, SandboxSettings
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.flows.run_plan import run_plan
from prefect_agentic.plan import parse_plan

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def paused_gate(previous: str | None = None, within: float = 90) -> tuple[str, str]:
    """(flow run id, pause key) of the flow run waiting at a gate other than ``previous``."""
    deadline = time.monotonic() + within
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in waiting_at_gates(client):
                key = run.state.state_details.pause_key
                if key != previous:
                    return str(run.id), key
            time.sleep(0.2)
    raise TimeoutError("no flow run waiting at a gate")


@pytest.mark.usefixtures("prefect_api")
def test_list_show_approve_and_reject_from_the_cli(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    outcome: dict[str, Any] = {}

    def go() -> None:
        state = run_plan(plan=parse_plan(TWO_GATES), repo=str(make_repo({"README.md": "x\n"})),
                         sandbox=SandboxSettings(image=sandbox_image),
                         gates=GateDefaults(poll_interval_seconds=0.5), return_state=True)
        outcome["report"] = state.result(raise_on_failure=False)

    runner = threading.Thread(target=go, daemon=True)
    runner.start()
    run_id, first_key = paused_gate()

    listed = agentic_cli("approvals", "list")
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout and "two-gates" in listed.stdout and "first" in listed.stdout
    assert "echo 1 > ONE" in listed.stdout and "requires_approval" in listed.stdout
    shown = agentic_cli("approvals", "show", run_id[:8])
    assert shown.returncode == 0, shown.stderr
    assert "Approve step first of plan two-gates?" in shown.stdout and "Goal: Two risky steps" in shown.stdout

    approved = agentic_cli("approve", run_id[:8], "--reason", "looks fine", "--as", "ada")
    assert approved.returncode == 0, approved.stderr
    assert f"approve: flow run {run_id}" in approved.stdout and "by ada" in approved.stdout

    paused_gate(previous=first_key)
    rejected = agentic_cli("reject", run_id, "--reason", "not today", "--as", "bob")
    assert rejected.returncode == 0, rejected.stderr
    runner.join(timeout=60)
    failed = outcome["report"]
    assert isinstance(failed, PlanRunFailed)
    assert failed.report.stopped == "step 'second' rejected by bob: not today"


def test_an_interactive_run_asks_at_its_terminal(make_repo, sandbox_image: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """On the embedded ephemeral API (no PREFECT_API_URL), as a person at a terminal would."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(TWO_GATES.replace("requires_approval: true, args: {command: \"cat", "args: {command: \"cat"))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", COLUMNS="120", TERM="xterm")
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect_agentic.cli.main", "run", str(plan), "--repo",
         str(make_repo({"README.md": "x\n"})), "--image", sandbox_image],
        stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    screen = Terminal(main)
    try:
        screen.wait_for("Decision")
        assert "Approve step first of plan two-gates?" in screen.text
        os.write(main, b"approve\n")
        screen.wait_for("Reason")
        os.write(main, b"typed at the terminal\n")
        screen.wait_for("Run succeeded")
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        os.close(main)


class Terminal:
    """What a pseudo-terminal has shown so far."""

    def __init__(self, fd: int) -> None:
        self.fd, self.text = fd, ""

    def wait_for(self, needle: str, within: float = 150) -> None:
        deadline = time.monotonic() + within
        while needle not in self.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared; the terminal showed:\n{self.text[-3000:]}")
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                try:
                    self.text += ANSI.sub("", os.read(self.fd, 65536).decode(errors="replace"))
                except OSError:  # the child closed the terminal
                    raise AssertionError(f"{needle!r} never appeared:\n{self.text[-3000:]}") from None
