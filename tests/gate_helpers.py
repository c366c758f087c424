"""What the approval-gate tests share: a plan with two gates, and finding runs waiting at a gate."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import FlowRun, StateType

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

