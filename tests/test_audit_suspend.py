"""One audit chain per flow run, whatever happens to its processes, and a run that waits says so.

A real Prefect server and a real process worker started by `agentic up`, the
crash automations of `agentic init`, the `run-plan` flow deployed to the
process pool. A deployed run suspends at its gate (its process ends), the
worker starts it again once approved; a run whose flow-run process is killed
is crashed and retried by another process. Each time, the flow run keeps one
log that `agentic audit verify` and `agentic replay` accept, and the waiting
run announces itself once: on `submit --wait`, on `agentic run` without a
terminal, in the run's logs, as an artifact and as an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import pytest
from api_reads import eventually, read_events
from audit_check import reseal
from deploy_helpers import BIN, PrefectStack, _descendants, free_port, wait_for_state
from prefect import flow
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.input import create_flow_run_input_from_model
from prefect.input.run_input import keyset_from_paused_state
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed, Suspended

from prefect_agentic.gates.answer import GateSummary, answer_form
from prefect_agentic.gates.form_copy import (
    GRACE_SECONDS,
    copy_keyset,
    restore_lost_form,
    save_form_copy,
    stored_input,
)
from prefect_agentic.record.audit import parse_log

GATED = """
id: audit-gated
goal: Ship the notes after a human said so
steps:
  - {id: notes, tool: shell, writes_workspace: true, args: {command: "echo notes > NOTES.md"}}
  - {id: publish, tool: shell, depends_on: [notes], requires_approval: true, args: {command: "cat NOTES.md"}}
"""
SLOW = """
id: audit-crash
goal: Survive a killed flow-run process
steps:
  - {id: first, tool: shell, writes_workspace: true, args: {command: "echo first > first.txt"}}
  - {id: second, tool: shell, depends_on: [first], writes_workspace: true,
     args: {command: "touch .agentic/second-started; sleep 20"}}
"""
DEPLOY = """
from prefect.deployments.runner import EntrypointType
from prefect_agentic.flows.run_plan import run_plan
run_plan.to_deployment(name="audit", entrypoint_type=EntrypointType.MODULE_PATH, tags=["agentic"],
                       work_pool_name="agentic-process").apply()
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sandbox_image) -> Iterator[PrefectStack]:  # type: ignore[no-untyped-def]
    """`agentic up` and `agentic init`, and run-plan deployed on the process pool as `run-plan/audit`."""
    stack = PrefectStack(tmp_path_factory.mktemp("audit-stack"), free_port())
    up = stack.run("agentic", "up", "--port", str(stack.port))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        init = stack.run("agentic", "init", "--crash-after", "600")
        assert init.returncode == 0, init.stdout + init.stderr
        deploy = subprocess.run([sys.executable, "-c", DEPLOY], env=stack.env, capture_output=True, text=True,
                                check=False, timeout=120)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        yield stack
    finally:
        stack.stop_workers()
        stack.run("agentic", "down")


class Watched:
    """A CLI command running in the background, its output collected line by line."""

    def __init__(self, stack: PrefectStack, *args: str, stream: str = "stdout") -> None:
        self.process = subprocess.Popen([str(BIN / "agentic"), *args], env=stack.env, cwd=stack.checkout,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.other: list[str] = []
        source, rest = ((self.process.stdout, self.process.stderr) if stream == "stdout"
                        else (self.process.stderr, self.process.stdout))
        self._readers = [threading.Thread(target=self._read, args=(source, self.lines), daemon=True),
                         threading.Thread(target=self._read, args=(rest, self.other), daemon=True)]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(pipe: Any, into: list[str]) -> None:
        for line in pipe:
            into.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 240) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.process.poll() is not None and not self._readers[0].is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r}: {self.lines} {self.other}")

    def finish(self, timeout: float = 240) -> int:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code


def _records(stack: PrefectStack, flow_run_id: UUID) -> list[Any]:
    return parse_log((stack.home / "agentic" / "audit" / "runs" / f"{flow_run_id}.jsonl").read_bytes().splitlines())


def _verify_and_replay(stack: PrefectStack, flow_run_id: UUID) -> None:
    verified = stack.run("agentic", "audit", "verify", str(flow_run_id))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"audit log of run {flow_run_id}: ok" in verified.stdout
    replayed = stack.run("agentic", "replay", str(flow_run_id))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "run status: recorded completed, replayed completed; same decisions" in replayed.stdout


def _one_chain(records: list[Any]) -> None:
    """Sequence numbers 0..n-1 in file order, each record chained to the one before, one run_started."""
    assert [r.seq for r in records] == list(range(len(records)))
    assert all(r.prev == before.hash for before, r in itertools.pairwise(records))
    assert [r.kind for r in records].count("run_started") == 1


def _flow_run_logs(stack: PrefectStack, flow_run_id: UUID) -> list[str]:
    with stack.client() as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [entry.message for entry in logs]


def _resealed_while_suspended_is_caught(stack: PrefectStack, flow_run_id: UUID) -> None:
    """The suspended process's last act is to anchor its head in Prefect: a log resealed while the
    run waits (and so before it ends with run_finished) is TAMPERED, not just unfinished."""
    honest = eventually(lambda: stack.run("agentic", "audit", "verify", str(flow_run_id)),
                         lambda found: "head anchored in Prefect" in found.stdout, within=60)
    assert honest.returncode == 1 and "does not end with run_finished" in honest.stdout, honest.stdout + honest.stderr
    assert "head anchored in Prefect" in honest.stdout, honest.stdout + honest.stderr
    log = stack.home / "agentic" / "audit" / "runs" / f"{flow_run_id}.jsonl"
    original = log.read_bytes()
    lines = original.splitlines()
    at = next(i for i, r in enumerate(parse_log(lines)) if r.kind == "verdict")
    log.write_bytes(b"".join(line + b"\n" for line in reseal(lines, at, lambda data: data.update(forged=True))))
    try:
        forged = stack.run("agentic", "audit", "verify", str(flow_run_id))
    finally:
        log.write_bytes(original)  # the run goes on with its honest log once approved
    assert forged.returncode == 1 and "TAMPERED" in forged.stdout, forged.stdout + forged.stderr
    assert "(run_suspended) has hash" in forged.stdout and "but Prefect's anchor holds" in forged.stdout


def test_a_suspended_then_approved_run_has_one_verified_chain_and_said_once_where_to_answer(  # type: ignore[no-untyped-def]
        stack, make_repo, tmp_path, sandbox_image) -> None:
    repo = make_repo({"README.md": "x\n"})
    (tmp_path / "gated.yaml").write_text(GATED)
    submit = Watched(stack, "submit", str(tmp_path / "gated.yaml"), "--repo", str(repo), "--deployment",
                     "run-plan/audit", "--param", f"sandbox={{image: {sandbox_image}}}", "--wait",
                     "--timeout", "300")
    flow_run_id = UUID(submit.wait_for(r"\(([0-9a-f-]{36})\)").group(1))
    submit.wait_for(r"Waiting for approval: step 'publish'")
    assert wait_for_state(stack, flow_run_id, {"Suspended"}, timeout=30).state.name == "Suspended"
    _resealed_while_suspended_is_caught(stack, flow_run_id)
    approve = stack.run("agentic", "approve", str(flow_run_id), "--as", "ada")
    assert approve.returncode == 0, approve.stdout + approve.stderr
    assert submit.finish() == 0, submit.lines + submit.other

    # submit --wait: the notice once, with the UI link and the exact command
    text = "\n".join(submit.lines)
    assert text.count("Waiting for approval") == 1, text
    assert f"http://127.0.0.1:{stack.port}/runs/flow-run/{flow_run_id}" in text
    assert f"or run: agentic approve {flow_run_id}" in text
    assert "the plan marks it requires_approval" in text
    assert submit.lines[-1].endswith(": Completed")

    records = _records(stack, flow_run_id)
    _one_chain(records)
    kinds = [r.kind for r in records]
    asked, suspended, resumed = (kinds.index(k) for k in ("approval_requested", "run_suspended", "run_resumed"))
    assert asked < suspended == resumed - 1, kinds
    assert "run_finished" not in kinds[:resumed]  # suspended is not crashed
    assert records[suspended].step == "publish" and records[suspended].data["gate"].startswith("approve-publish-")
    assert records[resumed].data["after"] == "run_suspended" and records[resumed].data["run_count"] >= 1
    [approval] = [r for r in records if r.kind == "approval"]
    assert (approval.data["decision"], approval.data["approver"]) == ("approve", "ada")
    assert records[-1].kind == "run_finished" and records[-1].data["status"] == "completed"
    _verify_and_replay(stack, flow_run_id)

    # the run's logs: asked once; after the resume, the answer received (not a second request)
    logs = eventually(lambda: _flow_run_logs(stack, flow_run_id),
                      lambda found: any("received: approve by ada" in m for m in found))
    assert sum("Waiting for approval" in m for m in logs) == 1, logs
    assert any("Answer to the approval of step 'publish' received: approve by ada" in m for m in logs), logs
    # the artifact and the event
    with stack.client() as client:
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    [waiting] = [a for a in artifacts if a.key == "agentic-approval-audit-gated"]
    assert f"agentic approve {flow_run_id}" in str(waiting.data)
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        events = eventually(lambda: asyncio.run(read_events(flow_run_id)),
                            lambda found: "prefect-agentic.run.completed" in {e["event"] for e in found})
    names = [e["event"] for e in events]
    assert {"prefect-agentic.approval.requested", "prefect-agentic.run.suspended",
            "prefect-agentic.run.resumed", "prefect-agentic.run.completed"} <= set(names), names
    requested = next(e for e in events if e["event"] == "prefect-agentic.approval.requested")
    assert requested["payload"]["approve_command"] == f"agentic approve {flow_run_id}"


def test_a_gate_whose_process_died_before_prefect_saved_its_form_gets_it_back_from_the_worker(  # type: ignore[no-untyped-def]
        stack, make_repo, tmp_path, sandbox_image) -> None:
    """``suspend_flow_run`` sets Suspended, then saves the form: a process dying in between leaves a
    run nobody can resume. The gate kept a copy; the pool's `agentic worker` puts it back, and the
    run is answered as the UI answers it."""
    repo = make_repo({"README.md": "x\n"})
    (tmp_path / "lost.yaml").write_text(GATED.replace("audit-gated", "audit-lost-form"))
    submit = Watched(stack, "submit", str(tmp_path / "lost.yaml"), "--repo", str(repo), "--deployment",
                     "run-plan/audit", "--param", f"sandbox={{image: {sandbox_image}}}", "--wait",
                     "--timeout", "300")
    flow_run_id = UUID(submit.wait_for(r"\(([0-9a-f-]{36})\)").group(1))
    suspended = wait_for_state(stack, flow_run_id, {"Suspended"}, timeout=120)
    assert suspended.state.name == "Suspended"
    keyset = suspended.state.state_details.run_input_keyset
    with stack.client() as client:
        saved = eventually(lambda: stored_input(client, flow_run_id, keyset["schema"]),
                           lambda found: found is not None)
        assert saved is not None
        client.delete_flow_run_input(flow_run_id, keyset["schema"])  # the state a death in between leaves
        refused = client.resume_flow_run(flow_run_id, run_input={"decision": "approve", "approver": "ada"})
        assert refused.status.value == "REJECT" and "schema not found" in str(refused.details), refused

        back = eventually(lambda: stored_input(client, flow_run_id, keyset["schema"]),
                          lambda found: found is not None, within=120)
        assert back == saved  # what Prefect had saved
        accepted = client.resume_flow_run(flow_run_id, run_input={"decision": "approve", "approver": "ada"})
        assert accepted.status.value == "ACCEPT", accepted
    assert submit.finish() == 0, submit.lines + submit.other
    assert submit.lines[-1].endswith(": Completed")
    [approval] = [r for r in _records(stack, flow_run_id) if r.kind == "approval"]
    assert (approval.data["decision"], approval.data["approver"]) == ("approve", "ada")
    worker_log = (stack.home / "agentic" / "stack" / "worker.log").read_text(errors="replace")
    assert f"flow run {flow_run_id}: its process ended before Prefect saved the approval form" in worker_log


def test_agentic_approvals_restores_a_lost_form_of_any_suspended_gate(stack) -> None:  # type: ignore[no-untyped-def]
    """A suspended gate outside the worker's pool, its form never saved (made here as
    ``suspend_flow_run`` makes it, minus the save): the CLI restores it, then the answer is taken."""
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        deployment = _gated_by_hand.to_deployment(name="no-pool").apply()  # resumable, in no worker's pool
        with stack.client() as client:
            flow_run = client.create_flow_run_from_deployment(deployment)
            key = "approve-publish-by-hand"
            create_flow_run_input_from_model(GateSummary.input_key(key), GateSummary(
                plan="by-hand", goal="g", step="publish", tool="shell", command="cat NOTES.md", risk="low",
                asked_at=datetime.now(timezone.utc), timeout_seconds=600), flow_run.id)
            save_form_copy(answer_form("<p>the review</p>"), key, flow_run_id=flow_run.id)
            state = Suspended(timeout_seconds=600, pause_key=key)
            state.state_details.run_input_keyset = keyset_from_paused_state(state)
            client.set_flow_run_state(flow_run.id, state, force=True)
            # a suspension only just made still has its process saving the form: left alone
            assert not restore_lost_form(client.read_flow_run(flow_run.id))
        time.sleep(GRACE_SECONDS + 1)
        listed = stack.run("agentic", "approvals", "list")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert f"flow run {flow_run.id}: its process ended before Prefect saved the answer form" in listed.stderr
        with stack.client() as client:
            copy = client.read_flow_run_input(flow_run.id, copy_keyset(key)["schema"])
            assert client.read_flow_run_input(flow_run.id, state.state_details.run_input_keyset["schema"]) == copy
        again = stack.run("agentic", "approvals", "list")
        assert "restored it" not in again.stderr  # once restored, nothing to do
        approve = stack.run("agentic", "approve", str(flow_run.id), "--as", "ada")
        assert approve.returncode == 0, approve.stdout + approve.stderr
        with stack.client() as client:
            assert client.read_flow_run(flow_run.id).state.name == "Resuming"  # taken: scheduled to run again


@flow(name="gated-by-hand")
def _gated_by_hand() -> None:
    """Never run: the flow a hand-made suspended gate belongs to."""


def test_agentic_run_without_a_terminal_says_where_to_answer(stack, make_repo, tmp_path, sandbox_image) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"README.md": "x\n"})
    plan = tmp_path / "gated.yaml"
    plan.write_text(GATED.replace("audit-gated", "audit-terminal"))
    run = Watched(stack, "run", str(plan), "--repo", str(repo), "--image", sandbox_image, stream="stderr")
    found = run.wait_for(r"or run: agentic approve ([0-9a-f-]{36})")
    approve = stack.run("agentic", "approve", found.group(1), "--as", "grace")
    assert approve.returncode == 0, approve.stdout + approve.stderr
    assert run.finish() == 0, run.lines + run.other
    text = "\n".join(run.lines)
    assert text.count("Waiting for approval: step 'publish' of plan audit-terminal") == 1, text
    assert f"http://127.0.0.1:{stack.port}/runs/flow-run/{found.group(1)}" in text
    _verify_and_replay(stack, UUID(found.group(1)))


def test_approval_notice_and_worker_settings_need_no_server() -> None:
    from prefect_agentic.gates.notice import WaitingNotice, why_gated

    notice = WaitingNotice(flow_run_id="f1", plan="p", step="s", gate="approve-s-1", timeout_seconds=60,
                           why=why_gated(False, ["shell command `git push`"]))
    assert "the tool policy gates shell command `git push`" in notice.text()
    assert "agentic approve f1" in notice.markdown()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_WORKER_QUERY_SECONDS"}
    code = ("from prefect_agentic.stack import worker_settings; "
            "print(worker_settings()['PREFECT_WORKER_QUERY_SECONDS'])")
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "1"


def _started(stack: PrefectStack, flow_run_id: UUID, marker: str, timeout: float = 240) -> Any:
    """The flow run once a step's command made ``marker`` in the run's workspace."""
    deadline = time.monotonic() + timeout
    while not any(stack.home.glob(f"agentic/workspaces/*/.agentic/{marker}")):
        assert time.monotonic() < deadline, f"{marker} never appeared"
        time.sleep(0.2)
    with stack.client() as client:
        return client.read_flow_run(flow_run_id)


def test_a_run_whose_worker_died_is_retried_on_another_worker_and_continues_its_chain(stack, make_repo, tmp_path, sandbox_image) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"f": "x"})
    (tmp_path / "slow.yaml").write_text(SLOW)
    submit = stack.run("agentic", "submit", str(tmp_path / "slow.yaml"), "--repo", str(repo), "--deployment",
                       "run-plan/audit", "--param", f"sandbox={{image: {sandbox_image}}}")
    assert submit.returncode == 0, submit.stdout + submit.stderr
    flow_run_id = UUID(re.search(r"\(([0-9a-f-]{36})\)", submit.stdout).group(1))  # type: ignore[union-attr]
    _started(stack, flow_run_id, "second-started")
    worker = json.loads((stack.home / "agentic" / "stack" / "stack.json").read_text())["worker_pid"]
    for doomed in (worker, *_descendants(worker)):  # the worker's machine dies, flow run and all
        with contextlib.suppress(ProcessLookupError):
            os.kill(doomed, signal.SIGKILL)
    # Nobody reports the death: the crash detector of `agentic init` would mark the run Crashed after
    # its silence (tests/test_scale_out.py waits for that); here the test does it at once, through
    # the same API. The retry automation schedules it again, and another worker takes it.
    with stack.client() as client:
        client.set_flow_run_state(flow_run_id, Crashed(message="no heartbeat: the worker died"), force=True)
    stack.start_worker("second")
    finished = wait_for_state(stack, flow_run_id, {"Completed", "Failed"}, timeout=300)
    with stack.client() as client:
        history = [(s.name, s.message) for s in client.read_flow_run_states(flow_run_id)]
    shown = " | ".join(f"{name}: {message}" for name, message in history)
    assert finished.state.name == "Completed", shown
    assert [name for name, _ in history].count("AwaitingRetry") == 1, shown

    records = _records(stack, flow_run_id)
    _one_chain(records)
    [resumed] = [r for r in records if r.kind == "run_resumed"]
    assert resumed.data["after_seq"] == resumed.seq - 1  # the retry went on right after the last record
    assert resumed.data["after"] not in ("run_suspended", "run_finished:completed")
    assert [(r.kind, r.step) for r in records[:resumed.seq]].count(("attempt_started", "second")) == 1
    _verify_and_replay(stack, flow_run_id)
