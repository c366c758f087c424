"""The audit head is anchored outside the log, also when no Prefect server is configured.

A forger who edits a record and recomputes every later hash ("reseals" the
log) leaves a chain that verifies on its own. The run's summary artifact in
Prefect's database still holds the true head; with no server configured that
database is the embedded API's, and ``agentic audit verify`` reads it there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from prefect_agentic.record.audit import parse_log, verify


def test_a_resealed_log_is_caught_on_the_embedded_api(make_repo, sandbox_image: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # no server: the embedded API
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), AGENTIC_HOME=str(tmp_path / "agentic"),
               AGENTIC_SANDBOX_IMAGE=sandbox_image, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    repo = make_repo({"README": "x\n"})
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"id": "anchor", "goal": "a run to forge", "steps": [
        {"id": "hello", "tool": "shell", "args": {"command": "echo hello"}}]}))

    def agentic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "prefect_agentic.cli.main", *args], env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    ran = agentic("run", str(plan), "--repo", str(repo), "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["flow_run_id"]
    log = tmp_path / "agentic" / "audit" / "runs" / f"{run_id}.jsonl"
    original = log.read_bytes().splitlines()
    records = parse_log(original)
    verdict = next(i for i, r in enumerate(records) if r.kind == "verdict")
    records[verdict].data["verdict"]["kind"] = "fail"
    lines = original[:verdict]
    for i in range(verdict, len(records)):  # reseal: every later record re-chained and re-hashed
        records[i].prev = records[i - 1].hash
        lines.append(records[i].seal())
    log.write_bytes(b"".join(line + b"\n" for line in lines))
    assert verify(lines).ok  # the chain alone no longer shows it

    checked = agentic("audit", "verify", run_id)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "but the run's summary artifact in Prefect recorded" in checked.stdout
    assert "TAMPERED" in checked.stdout
