"""The audit head is anchored outside the log, for every way a run's process ends, also with no server.

A forger who edits a record and recomputes every later hash ("reseals" the
log) leaves a chain that verifies on its own. Each process of a run ends by
handing the log's head to Prefect in an artifact of its own; with no server
configured that is the embedded API's database, and ``agentic audit verify``
reads it there. What a step prints cannot pass for that head, a crashed run's
log is anchored like a finished one's, and a head that could not be checked is
said to be unchecked, with exit 3, unless ``--chain-only`` asked for the chain alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from audit_check import reseal

from prefect_agentic.record.audit import parse_log, verify

FAKE_HEAD = "f" * 64


class Embedded:
    """`agentic` as a user runs it with no server configured: Prefect's embedded API on its own home."""

    def __init__(self, home: Path, image: str) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        self.env.update(PREFECT_HOME=str(home / "prefect"), AGENTIC_HOME=str(home / "agentic"),
                        AGENTIC_SANDBOX_IMAGE=image, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
        self.plans = home / "plans"
        self.plans.mkdir(parents=True, exist_ok=True)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "prefect_agentic.cli.main", *args]

    def agentic(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), env={**self.env, **env}, capture_output=True, text=True,
                              timeout=300, check=False)

    def plan(self, plan: dict[str, object]) -> Path:
        path = self.plans / f"{plan['id']}.yaml"
        path.write_text(yaml.safe_dump(plan))
        return path

    def log(self, run_id: str) -> Path:
        return self.home / "agentic" / "audit" / "runs" / f"{run_id}.jsonl"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Embedded:
    return Embedded(tmp_path_factory.mktemp("anchor"), sandbox_image)


def run_json(embedded: Embedded, plan: dict[str, object], repo: Path) -> tuple[int, str]:
    """`agentic run PLAN --json`: its exit code and the flow run id."""
    ran = embedded.agentic("run", str(embedded.plan(plan)), "--repo", str(repo), "--json")
    assert ran.stdout.strip(), ran.stderr
    return ran.returncode, json.loads(ran.stdout)["flow_run_id"]


def resealed_is_caught(embedded: Embedded, run_id: str, kind: str) -> str:
    """Reseal the run's log from its first ``kind`` record on; `agentic audit verify` must say TAMPERED.
    The honest log comes back afterwards, and the verify output is returned."""
    log = embedded.log(run_id)
    original = log.read_bytes()
    lines = original.splitlines()
    records = parse_log(lines)
    at = next(i for i, r in enumerate(records) if r.kind == kind)
    forged = reseal(lines, at, lambda data: data.update(forged=True))
    assert verify(forged).ok  # the chain alone no longer shows it
    log.write_bytes(b"".join(line + b"\n" for line in forged))
    try:
        checked = embedded.agentic("audit", "verify", run_id)
    finally:
        log.write_bytes(original)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "but Prefect's anchor holds" in checked.stdout and "TAMPERED" in checked.stdout, checked.stdout
    return checked.stdout


def test_a_resealed_log_is_caught_on_the_embedded_api(embedded: Embedded, make_repo) -> None:  # type: ignore[no-untyped-def]
    code, run_id = run_json(embedded, {"id": "anchor", "goal": "a run to forge", "steps": [
        {"id": "hello", "tool": "shell", "args": {"command": "echo hello"}}]}, make_repo({"README": "x\n"}))
    assert code == 0
    honest = embedded.agentic("audit", "verify", run_id)
    assert honest.returncode == 0, honest.stdout + honest.stderr
    assert f"audit log of run {run_id}: ok, " in honest.stdout and "(anchored in Prefect)" in honest.stdout
    said = resealed_is_caught(embedded, run_id, "verdict")
    assert "(run_finished) has hash" in said  # the last record is there, re-hashed: rewritten


def test_a_head_a_failing_step_prints_does_not_pass_for_the_anchor(embedded: Embedded, make_repo) -> None:  # type: ignore[no-untyped-def]
    """The run summary quotes the goal, outcomes and a failed step's last output lines before its own
    head line: a head read from it could be one a step printed."""
    plan = {"id": "anchor-shadow", "goal": f"print head `{FAKE_HEAD}`", "steps": [
        {"id": "liar", "tool": "shell", "args": {"command": f"echo 'head `{FAKE_HEAD}`'; exit 1"}}]}
    code, run_id = run_json(embedded, plan, make_repo({"README": "x\n"}))
    assert code == 1
    honest = embedded.agentic("audit", "verify", run_id)
    assert honest.returncode == 0, honest.stdout + honest.stderr
    assert "(anchored in Prefect)" in honest.stdout and FAKE_HEAD[:12] not in honest.stdout
    resealed_is_caught(embedded, run_id, "attempt_finished")


def test_a_crashed_runs_resealed_log_is_caught(embedded: Embedded, make_repo, docker_client) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C ends `agentic run` with a crash record and no summary; the head is anchored all the same."""
    plan = embedded.plan({"id": "anchor-crash", "goal": "be interrupted", "steps": [
        {"id": "wait", "tool": "shell", "args": {"command": "sleep 120"}}]})
    runs = embedded.home / "agentic" / "audit" / "runs"
    before = set(runs.glob("*.jsonl"))
    proc = subprocess.Popen(embedded.command("run", str(plan), "--repo", str(make_repo({"f": "x"}))),
                            env=embedded.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while not _running_step(docker_client, "anchor-crash-"):  # interrupted while its step runs
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    [log] = set(runs.glob("*.jsonl")) - before
    run_id = log.stem
    last = parse_log(log.read_bytes().splitlines())[-1]
    assert (last.kind, last.data["status"]) == ("run_finished", "crashed")
    honest = embedded.agentic("audit", "verify", run_id)
    assert honest.returncode == 0 and "(anchored in Prefect)" in honest.stdout, honest.stdout + honest.stderr
    resealed_is_caught(embedded, run_id, "attempt_started")


def _running_step(docker_client, run_key_start: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether a managed container of a run whose key starts so is running (one list call)."""
    found = docker_client.api.containers(filters={"label": "org.prefect-agentic.managed=true", "status": "running"})
    return any((c.get("Labels") or {}).get("org.prefect-agentic.run", "").startswith(run_key_start) for c in found)


def test_a_head_no_anchor_covers_is_not_checked_and_exits_3_unless_chain_only(embedded: Embedded, make_repo) -> None:  # type: ignore[no-untyped-def]
    code, run_id = run_json(embedded, {"id": "anchor-copied", "goal": "a log to copy", "steps": [
        {"id": "hello", "tool": "shell", "args": {"command": "echo hello"}}]}, make_repo({"README": "x\n"}))
    assert code == 0
    elsewhere = str(uuid.uuid4())  # a log copied from a machine whose Prefect API this one cannot see
    embedded.log(elsewhere).write_bytes(embedded.log(run_id).read_bytes())

    unchecked = embedded.agentic("audit", "verify", elsewhere)
    assert unchecked.returncode == 3, unchecked.stdout + unchecked.stderr
    said = " ".join(unchecked.stdout.split())
    assert f"audit log of run {elsewhere}: chain ok, " in said and "head NOT checked: the Prefect API" in said
    assert f"does not know flow run {elsewhere}" in said, said
    assert "--chain-only" in unchecked.stderr and ": ok," not in said

    chain_only = embedded.agentic("audit", "verify", "--chain-only", elsewhere)
    assert chain_only.returncode == 0, chain_only.stdout + chain_only.stderr
    assert "chain ok, " in chain_only.stdout and "head not checked (--chain-only)" in chain_only.stdout

    # a configured server that does not answer: the chain alone needs none, a whole check says so and exits 3
    nowhere = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}
    offline = embedded.agentic("audit", "verify", "--chain-only", elsewhere, **nowhere)
    assert offline.returncode == 0 and "(--chain-only)" in offline.stdout, offline.stdout + offline.stderr
    down = embedded.agentic("audit", "verify", run_id, **nowhere)
    assert down.returncode == 3 and "cannot reach the Prefect API at http://127.0.0.1:9/api" in down.stderr
