"""The step guard: tool policy, budget and secret redaction, in one place.

``Tool.invoke`` and ``ToolContext.run`` call the guard of the step they run
in, so every tool call and every sandboxed command is checked the same way.
Each denial is recorded (kind ``policy_decision``) before it fails the step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.budget import BudgetMeter
from prefect_agentic.errors import BudgetExceededError, PolicyDeniedError
from prefect_agentic.policy import PolicyDecision, check_command, check_tool_call
from prefect_agentic.record.recorder import Recorder
from prefect_agentic.sandbox.result import CommandResult
from prefect_agentic.secrets import Redactor
from prefect_agentic.tools.base import CallGuard, Tool, ToolInput


class StepGuard(CallGuard):
    """Guards one attempt of one step."""

    def __init__(self, step_id: str, policy: ToolPolicy, meter: BudgetMeter, recorder: Recorder,
                 redactor: Redactor, *, secret_env: Mapping[str, str], approved: bool) -> None:
        self.step_id = step_id
        self.policy = policy
        self.meter = meter
        self.recorder = recorder
        self.redactor = redactor
        self.approved = approved
        self.secret_env = dict(secret_env)
        self._cut_by_budget = False

    def before_tool(self, tool: type[Tool], args: ToolInput) -> None:
        self._enforce(check_tool_call(self.policy, tool, args), "tool")
        self.charge("tool_calls")

    def before_command(self, command: Sequence[str], timeout: float) -> float:
        self._enforce(check_command(self.policy, command, approved=self.approved), "command")
        self.charge(None)
        remaining = self.meter.remaining_seconds()
        self._cut_by_budget = remaining is not None and remaining < timeout
        return timeout if remaining is None else max(1.0, min(timeout, remaining))

    def after_command(self, result: CommandResult) -> CommandResult:
        if result.cpu_seconds:
            self.meter.add("cpu_seconds", result.cpu_seconds)
        if result.timed_out and self._cut_by_budget:
            self.charge(None)  # the wall-clock budget, not the step's timeout, ended the command
        if not self.redactor:
            return result
        return dataclasses.replace(result, stdout=self.redactor.text(result.stdout),
                                   stderr=self.redactor.text(result.stderr))

    def redact(self, raw: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.redactor.data(raw)

    def spend(self, meter: str, amount: float) -> None:
        self.meter.add(meter, amount)

    def _enforce(self, decision: PolicyDecision, level: str) -> None:
        if decision.allowed:
            return
        self.recorder.record("policy_decision", {"level": level, **decision.as_record()},
                             step_id=self.step_id)
        raise PolicyDeniedError(str(decision.rule), f"{decision.reason} ({level}: {decision.subject})")

    def charge(self, meter: str | None) -> None:
        """Charge one unit of ``meter`` (``None``: only check), recording an exhausted budget."""
        try:
            if meter is None:
                self.meter.check()
            else:
                self.meter.charge(meter)
        except BudgetExceededError as exc:
            self.recorder.record("budget", {"event": "exhausted", "limit": exc.limit,
                                            "usage": self.meter.snapshot()}, step_id=self.step_id)
            raise
