"""What the approval-gate tests share: a plan with two gates, finding runs waiting at a gate, and
an approver that answers them through the Prefect API the way the UI's resume form does."""

from __future__ import annotations

import threading
import time
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.flow_runs import resume_flow_run

from prefect_agentic.gates.answer import read_review

TWO_GATES = """
id: two-gates
goal: Two risky steps
steps:
  - {id: first, tool: shell, requires_approval: true, writes_workspace: true, args: {command: "echo 1 > ONE"}}
  - {id: second, tool: shell, depends_on: [first], requires_approval: true, args: {command: "cat ONE"}}
"""


def waiting_at_gates(client: Any) -> list[FlowRun]:
    """Flow runs paused at an approval gate (pause keys ``approve-…``), through a sync client."""
    paused = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
    return [run for run in paused if run.state.state_details.pause_key.startswith("approve-")]


class Approver:
    """Answers the next gates through the Prefect API, one answer per gate, in order."""

    def __init__(self, *answers: dict[str, str]) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []
        self.keys: list[str] = []
        self.error: BaseException | None = None
        with get_client(sync_client=True) as client:  # other tests' runs still waiting are not ours
            self.earlier = {run.id for run in waiting_at_gates(client)}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for answer in self.answers:
                flow_run = self._wait_for_gate()
                resume_flow_run(flow_run.id, run_input=answer)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by done()
            self.error = exc

    def _wait_for_gate(self) -> Any:
        deadline = time.monotonic() + 90
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                for run in waiting_at_gates(client):
                    if run.id in self.earlier:
                        continue
                    details = run.state.state_details
                    if details.pause_key not in self.keys:
                        self.keys.append(details.pause_key)
                        self.questions.append(read_review(run))
                        return run
                time.sleep(0.2)
        raise TimeoutError("no gate paused a flow run within 90 s")

    def done(self) -> None:
        self.thread.join(timeout=30)
        if self.error:
            raise self.error


class ApproveEveryGate:
    """Approves every gate that pauses a flow run from now until ``stop()``, as an on-call approver would.

    For runs that may ask any number of times (a chaos campaign: its reference run, each chaos run and
    each clean re-run reach the gate unless an earlier approval of the same change is recorded).
    """

    def __init__(self, approver: str = "on-call", reason: str = "approved for the chaos campaign") -> None:
        self.answer = {"decision": "approve", "approver": approver, "reason": reason}
        self.questions: list[str] = []
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        with get_client(sync_client=True) as client:  # other tests' runs still waiting are not ours
            self.earlier = {run.id for run in waiting_at_gates(client)}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        answered: set[str] = set()
        try:
            with get_client(sync_client=True) as client:
                while not self.stopping.wait(0.2):
                    for run in waiting_at_gates(client):
                        key = f"{run.id}/{run.state.state_details.pause_key}"
                        if run.id in self.earlier or key in answered:
                            continue
                        answered.add(key)
                        self.questions.append(read_review(run))
                        resume_flow_run(run.id, run_input=self.answer)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by stop()
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        if self.error:
            raise self.error
