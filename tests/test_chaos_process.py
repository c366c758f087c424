"""``process_kill``: a chaos run's process is SIGKILLed at a seeded point, then run again as a user would.

The campaign runs the chaos run as an `agentic run` subprocess (on the campaign's
own Prefect API), the fault kills it mid-step, and the clean re-run resumes it:
completed steps come from the cache, the killed step runs again, the log of the
killed run still chains, the re-run ends on the reference snapshot, and no
container is left. The fault is a Prefect event too (sent before the kill), and
the campaign marks the killed flow run Crashed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from uuid import UUID

from conftest import agentic_chaos_json
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.events import ReceivedEvent
from test_chaos_campaign import attempt, records, sealed

from prefect_agentic.chaos import ChaosSpec, Fault
from prefect_agentic.chaos import invariants as inv
from prefect_agentic.record.audit import parse_log
from prefect_agentic.record.store import AuditStore

PLAN = """\
id: kill-demo
goal: survive a killed process
steps:
  - {id: a, tool: shell, writes_workspace: true, args: {command: 'echo a > a.txt'}}
  - {id: b, tool: shell, depends_on: [a], writes_workspace: true, args: {command: 'sleep 3; cat a.txt > b.txt'}}
"""


def test_a_killed_runs_log_need_not_be_complete_and_its_kill_counts_by_the_resumed_run() -> None:
    killed = [("run_started", None, {"run_key": "k"}), *attempt("a", 1),
              ("step_finished", "a", {"status": "completed"}), ("attempt_started", "b", {"attempt": 1}),
              ("chaos_fault", "b", {"kind": "process_kill", "attempt": 1, "seconds": 1.5})]
    assert inv.check_audit_verifies(sealed(killed), complete=False) == []
    assert [v.detail for v in inv.check_audit_verifies(sealed(killed))] == ["the log does not end with run_finished"]
    assert [v.detail for v in inv.check_audit_verifies([])] == ["the run left no audit log"]
    assert inv.fault_outcomes(records(killed), 0, resumed="completed")["process_kill"].recovered == 1
    assert inv.fault_outcomes(records(killed), 0, resumed="failed")["process_kill"].failed_cleanly == 1
    assert ChaosSpec(faults=[Fault(kind="process_kill", steps="b")]).process_kills


def test_a_killed_runs_flow_run_must_be_final_though_its_log_cannot_end() -> None:
    killed = records([("run_started", None, {"run_key": "k"}), ("attempt_started", "b", {"attempt": 1}),
                      ("chaos_fault", "b", {"kind": "process_kill", "attempt": 1})])
    assert inv.check_terminal(killed, final_state="Crashed", elapsed_s=2.0, bound_s=60, killed=True) == []
    assert [v.detail for v in inv.check_terminal(killed, final_state="Running", elapsed_s=2.0, bound_s=60,
                                                 killed=True)] == [
        "the killed run's flow run is in state Running, not a final one"]
    assert [v.detail for v in inv.check_terminal(killed, final_state="Crashed", elapsed_s=2.0, bound_s=60)] == [
        "the run did not end in a terminal state (last record chaos_fault)", "the flow run ended in state Crashed"]


def _chaos_events(flow_run_id: str, within: float = 30) -> list[ReceivedEvent]:
    """The run's ``prefect-agentic.chaos.*`` events the API holds (it stores events in batches: read until one is there)."""
    deadline = time.monotonic() + within
    while True:
        event_filter = EventFilter(event=EventNameFilter(prefix=["prefect-agentic.chaos."]),
                                   resource=EventResourceFilter(id=[f"prefect-agentic.run.{flow_run_id}"]))
        with get_client(sync_client=True) as client:
            events = client.read_events(filter=event_filter, limit=50).events  # the API refuses its default, 100
        if events or time.monotonic() > deadline:
            return events
        time.sleep(1)


def test_agentic_chaos_kills_the_run_mid_step_and_running_it_again_resumes_it(
        make_repo, sandbox_image: str, tmp_path: Path, prefect_api: str) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    spec = {"faults": [{"kind": "process_kill", "steps": "b", "seconds": 1.5}]}  # b's command runs 3 s
    report, _ = agentic_chaos_json(plan, make_repo({"f": "x"}), sandbox_image, json.dumps(spec), runs=1, seed=0,
                                   api=prefect_api)
    assert report["ok"] is True and report["violations"] == []
    (run,) = report["runs"]
    assert run["status"] == "killed"
    assert {k: v for k, v in report["kinds"]["process_kill"].items() if v} == {"injected": 1, "recovered": 1}
    store = AuditStore()
    killed = [(r.kind, r.step) for r in parse_log(store.read_log(run["flow_run_id"]))]
    assert killed[-3:] == [("step_input", "b"), ("attempt_started", "b"), ("chaos_fault", "b")]  # died in b
    assert ("step_finished", "a") in killed
    resumed = parse_log(store.read_log(run["rerun_flow_run_id"]))
    # a from the killed run's cache; b, killed mid-command, executed again (no other run's cache answers it)
    assert [(r.step, r.data["status"]) for r in resumed if r.kind == "step_finished"] == [
        ("a", "cached"), ("b", "completed")]
    assert resumed[-1].kind == "run_finished" and resumed[-1].data["status"] == "completed"

    # the fault reached Prefect as an event, though the process died right after recording it
    (event,) = _chaos_events(run["flow_run_id"])
    assert event.event == "prefect-agentic.chaos.process_kill" and event.payload["step"] == "b"
    # and the campaign ended the killed flow run, which nobody had told
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run["flow_run_id"])).state
    assert state is not None and state.type is StateType.CRASHED
    assert "chaos fault process_kill in step b" in (state.message or "")
