"""Faults on the Prefect API requests of a run's process: ``api_error`` and ``api_latency``.

Prefect's own clients (sync and async) meet the injected answers inside their
retry loop, against a real Prefect server; a campaign with API faults runs on
the embedded API, as `agentic chaos` does, and every invariant holds.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import agentic_chaos_json
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError

from prefect_agentic.chaos import ChaosSpec, Fault, load_chaos_spec
from prefect_agentic.chaos import api as chaos_api
from prefect_agentic.chaos.spec import ChaosSpecError
from prefect_agentic.record.audit import parse_log, verify
from prefect_agentic.record.store import AuditStore


class ListRecorder:
    """Keeps the records; with ``call_api``, each record makes an API request of its own, as the
    run's progress artifact does."""

    def __init__(self, call_api: bool = False) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.call_api = call_api

    def record(self, kind: str, data: Any, *, step_id: str | None = None) -> None:
        self.records.append((kind, dict(data)))
        if self.call_api:
            with get_client(sync_client=True) as client:
                client.hello()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.records if k == kind]


def test_api_faults_are_selected_by_route_and_refuse_tool_selectors(tmp_path: Path) -> None:
    assert chaos_api.route_of(httpx.URL("http://127.0.0.1:4200/api/task_runs/abc/set_state")) == "task_runs/abc/set_state"
    assert Fault(kind="api_error", routes="task_runs/*").routes == "task_runs/*"
    spec = tmp_path / "chaos.yaml"
    for bad, why in [("{kind: api_error, tools: shell}", "select them with routes"),
                     ("{kind: tool_exit, routes: 'logs/'}", "routes is only for api_error and api_latency"),
                     ("{kind: api_latency, status: 500}", "status and retry_after are only for api_error"),
                     ("{kind: tool_exit, retry_after: 1}", "status and retry_after are only for api_error"),
                     ("{kind: api_error, status: 200}", "faults.0.status")]:
        spec.write_text(f"faults:\n  - {bad}\n")
        with pytest.raises(ChaosSpecError, match=why):
            load_chaos_spec(str(spec))
    every = ChaosSpec(faults=[Fault(kind="api_error", routes="logs/", status=429), Fault(kind="tool_exit")])
    assert ChaosSpec.model_validate(every.model_dump()) == every  # a saved spec (a block) holds every field
    assert not ChaosSpec(faults=[Fault(kind="tool_exit")]).api_faults
    assert ChaosSpec(faults=[Fault(kind="api_latency")]).api_faults


def test_the_same_seed_hits_the_same_requests() -> None:
    spec = ChaosSpec(seed=4, faults=[Fault(kind="api_error", rate=0.5)])
    requests = [httpx.Request("POST", f"http://h/api/{route}") for route in ["logs/", "flows/x"] * 6]

    def decisions() -> list[bool]:
        chaos = chaos_api.ApiChaos(spec, ListRecorder())
        return [chaos.plan_try(chaos.begin(r))[1] is not None for r in requests]  # type: ignore[arg-type]

    first = decisions()
    assert first == decisions() and 0 < sum(first) < len(first)
    events = chaos_api.ApiChaos(spec, ListRecorder()).begin(httpx.Request("POST", "http://h/api/events/in"))
    assert events is None  # the events of the faults themselves are never faulted


@pytest.mark.usefixtures("prefect_api")
def test_prefect_retries_an_injected_503_and_a_500_reaches_the_caller_and_recording_is_never_faulted() -> None:
    recorder = ListRecorder(call_api=True)  # each record calls the API: those calls must pass untouched
    spec = ChaosSpec(seed=1, faults=[
        Fault(kind="api_error", routes="hello", status=503, retry_after=0, attempts=[1]),
        Fault(kind="api_latency", routes="hello", seconds=0.3, attempts=[2]),
        Fault(kind="api_error", routes="health", status=500)])
    with chaos_api.active(spec, recorder):
        with get_client(sync_client=True) as client:
            started = time.monotonic()
            assert client.hello().status_code == 200  # try 1: the 503, try 2 (after 0 s): 0.3 s late, then real
            assert time.monotonic() - started >= 0.3
            with pytest.raises(PrefectHTTPStatusError, match="500"):
                client._client.get("/health")

        async def async_hello() -> int:
            async with get_client() as async_client:
                return (await async_client.hello()).status_code

        assert asyncio.run(async_hello()) == 200
    faults = [(f["kind"], f["route"], f["attempt"]) for f in recorder.of("chaos_fault")]
    assert faults == [("api_error", "hello", 1), ("api_latency", "hello", 2), ("api_error", "health", 1),
                      ("api_error", "hello", 1), ("api_latency", "hello", 2)]
    assert [f["request"] for f in recorder.of("chaos_fault")][::2] == ["GET hello#1", "GET health#1", "GET hello#2"]
    outcomes = [(o["request"], o["outcome"], o["tries"], o.get("status")) for o in recorder.of("chaos_api_outcome")]
    assert outcomes == [("GET hello#1", "absorbed", 2, 200), ("GET health#1", "reached_caller", 1, 500),
                        ("GET hello#2", "absorbed", 2, 200)]
    with get_client(sync_client=True) as client:  # the window is over: nothing is faulted
        assert client._client.get("/health").status_code == 200
    assert len(recorder.records) == 8


def test_a_campaign_with_api_faults_keeps_every_invariant_and_logs_each_fault(
        make_repo, sandbox_image: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text("id: api-chaos-demo\ngoal: survive API faults\nsteps:\n"
                    "  - {id: a, tool: shell, writes_workspace: true, args: {command: 'sleep 1; echo a > a.txt'}}\n"
                    "  - {id: b, tool: shell, depends_on: [a], args: {command: 'cat a.txt'}}\n")
    spec = {"faults": [
        # the run's progress artifact writes: the first try fails as a busy API answers, Prefect retries it
        {"kind": "api_error", "routes": "artifacts*", "status": 503, "retry_after": 0, "attempts": [1]},
        # half of the retries get a 500, which Prefect does not retry: the update fails, the run goes on
        {"kind": "api_error", "routes": "artifacts*", "status": 500, "attempts": [2], "rate": 0.5},
        {"kind": "api_latency", "rate": 0.5, "seconds": 0.05},
    ]}
    report, _ = agentic_chaos_json(plan, make_repo({"f": "x"}), sandbox_image, json.dumps(spec), runs=2, seed=2)
    assert report["ok"] is True and report["violations"] == []
    assert [r["status"] for r in report["runs"]] == ["completed", "completed"]
    errors = report["kinds"]["api_error"]
    # two progress writes a run (made when step a ends, a second into the run, updated when b ends),
    # each first try a 503; seed 2 gives three of the four retries a 500, which reaches the run, and the run goes on
    assert {k: v for k, v in errors.items() if v} == {"injected": 7, "absorbed": 4, "recovered": 3}
    for run in report["runs"]:
        lines = AuditStore().read_log(run["flow_run_id"])
        assert verify(lines).complete and verify(lines).problems == []
        records = parse_log(lines)
        faults = [r.data for r in records if r.kind == "chaos_fault" and r.data["kind"] == "api_error"]
        assert faults and all(f["route"].startswith("artifacts") for f in faults)
        outcomes = {r.data["request"]: r.data["outcome"] for r in records if r.kind == "chaos_api_outcome"}
        assert set(outcomes) == {f["request"] for f in faults}
        assert all(outcomes[f["request"]] == ("reached_caller" if f["status"] == 500 else "absorbed")
                   for f in faults if f["status"] == 500 or not any(
                       g["status"] == 500 and g["request"] == f["request"] for g in faults))
