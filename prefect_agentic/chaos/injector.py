"""Injects a ``ChaosSpec``'s faults around a step's tool call and records each one.

Every injected fault is a ``chaos_fault`` audit record before it acts, so a
chaos run explains itself (the audit log turns the record into a Prefect
event ``prefect-agentic.chaos.<kind>``). Without a spec nothing here runs:
the executor checks ``run.chaos is None`` once per attempt.
"""

from __future__ import annotations

import time

from prefect_agentic.chaos.spec import ChaosSpec, FaultKind
from prefect_agentic.errors import ToolError
from prefect_agentic.record.recorder import Recorder

BEFORE = (FaultKind.latency_before, FaultKind.tool_exit, FaultKind.tool_timeout)
AFTER = (FaultKind.latency_after,)


class InjectedFault(ToolError):
    """A tool failure injected by a chaos run (retryable, as its real counterpart is)."""

    retryable = True

    def __init__(self, kind: FaultKind, message: str) -> None:
        self.kind = kind
        self.chaos_kind = kind.value  # error_kind() groups failures by it: chaos:<kind>
        super().__init__(message)


class ChaosInjector:
    """The faults of ``spec`` for one step attempt."""

    def __init__(self, spec: ChaosSpec, recorder: Recorder, tool: str, step_id: str, attempt: int) -> None:
        self.spec, self.recorder = spec, recorder
        self.tool, self.step_id, self.attempt = tool, step_id, attempt

    def before_tool(self) -> None:
        """Latency first, then at most one failure (the first selected fault that hits)."""
        self._inject(BEFORE)

    def after_tool(self) -> None:
        self._inject(AFTER)

    def _inject(self, kinds: tuple[FaultKind, ...]) -> None:
        for index, fault in enumerate(self.spec.faults):
            if fault.kind not in kinds or not fault.selects(self.tool, self.step_id, self.attempt):
                continue
            if not self.spec.hits(index, self.step_id, self.attempt):
                continue
            self.recorder.record("chaos_fault", {
                "fault": index, "kind": fault.kind.value, "tool": self.tool, "attempt": self.attempt,
                "seed": self.spec.seed, **({"seconds": fault.seconds} if "latency" in fault.kind.value else {})},
                step_id=self.step_id)
            if fault.kind in (FaultKind.latency_before, FaultKind.latency_after):
                time.sleep(fault.seconds)
            elif fault.kind is FaultKind.tool_exit:
                raise InjectedFault(fault.kind, f"chaos: tool '{self.tool}' exited with code 1 (injected)")
            elif fault.kind is FaultKind.tool_timeout:
                raise InjectedFault(fault.kind, f"chaos: tool '{self.tool}' timed out (injected)")
