"""``service_canary``: deploy the workspace's version as a canary and roll it out under analysis.

One step, so that the rollback path is in the same process as the rollout: a breach, a window
without enough traffic, the deadline and any error all end in a rollback before the step ends.
The decision, with its numbers and thresholds, goes to the audit log and to a Prefect artifact
(table and chart).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import docker
from pydantic import Field, model_validator

from prefect_agentic.environments import evidence
from prefect_agentic.environments.analysis import Check, Thresholds
from prefect_agentic.environments.rollout import RolloutResult, StepSummary, run_canary
from prefect_agentic.environments.stack import Stack
from prefect_agentic.record.recorder import Recorder
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.tools.deploy.common import ServiceInput, StackName, stack, workspace_image


class CanaryInput(ServiceInput):
    stack: StackName
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 50, 100], min_length=1, description="Canary shares in %, rising, ending at 100.")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    hold: bool = Field(default=False, description="Stop after the last share without promoting (for a promotion "
                       "gate); the steps then end below 100 and a later service_canary step takes the canary over.")
    timeout_seconds: float | None = Field(default=None, gt=0, description="Deadline of the whole rollout "
                                          "(default: twice the windows plus two minutes); rolled back when it passes.")

    @model_validator(mode="after")
    def _rising_to_100(self) -> CanaryInput:
        rising = self.steps == sorted(set(self.steps))
        if self.hold and (not rising or self.steps[-1] == 100):
            raise ValueError(f"steps {self.steps} of a held canary must rise strictly and end below 100")
        if not self.hold and (not rising or self.steps[-1] != 100):
            raise ValueError(f"steps {self.steps} must rise strictly and end at 100")
        return self


class CanaryOutput(ToolOutput):
    headline: str = Field(default="", description="The decision in a few words, for the run's summary table.")
    stack: str
    decision: str
    reason: str
    image: str
    stable_before: str | None
    stable_after: str | None
    steps: list[StepSummary]
    checks: list[Check]
    thresholds: Thresholds


class ServiceCanaryTool(Tool):
    name: ClassVar[str] = "service_canary"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Canary the workspace's service under analysis; promote or roll back."
    Input: ClassVar[type[ToolInput]] = CanaryInput
    Output: ClassVar[type[ToolOutput]] = CanaryOutput
    default_success: ClassVar[Mapping[str, Any]] = {"exit_code": 0}

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "deploy"

    def run(self, args: CanaryInput, ctx: ToolContext) -> Mapping[str, Any]:
        image, _ = workspace_image(ctx, args)
        t = args.thresholds
        deadline = args.timeout_seconds or 2 * len(args.steps) * t.window_seconds + 120

        def log(check: Check) -> None:
            ctx.logger.info("canary %s %% t=%gs: %d requests, error rate %.3f, p%g %s ms -> %s %s", check.share,
                            check.at_seconds, check.requests, check.error_rate, t.latency_percentile,
                            check.latency_ms, check.result, check.reason)

        result = run_canary(stack(ctx, args.stack), image, args.steps, t, deadline, log, hold=args.hold)
        announce(result, args.stack, ctx.recorder, ctx.step_id)
        ctx.logger.info("canary %s: %s", result.decision, result.reason)
        return {"exit_code": 0 if result.decision != "rolled_back" else 1, "stack": args.stack, "log": result.reason,
                "headline": headline(result),
                "decision": result.decision, "reason": result.reason, "image": image,
                "stable_before": result.stable_before, "stable_after": result.stable_after,
                "steps": result.steps, "checks": result.checks, "thresholds": t}


def headline(result: RolloutResult) -> str:
    """``promoted``, ``held at 50 %`` or ``ROLLED BACK at 20 %: <why>``: what a summary table shows."""
    last = f" at {result.steps[-1].share} %" if result.steps else ""
    if result.decision == "promoted":
        return "canary promoted to 100 %"
    if result.decision == "held":
        return f"canary held{last} for promotion"
    return f"canary ROLLED BACK{last}: {result.reason.split(': ', 1)[-1]}"


def roll_back_held(client: docker.DockerClient, held: Mapping[str, Any], why: str, recorder: Recorder,
                   step_id: str) -> RolloutResult | None:
    """Roll back a canary a ``hold`` rollout left waiting, because the run stopped before promoting it
    (a rejected or unanswered promotion gate). None when that canary is no longer there."""
    target = Stack(client, held["stack"])
    if target.state().canary_version != held["image"]:
        return None
    target.rollback()
    result = RolloutResult.model_validate({
        **{k: held[k] for k in ("image", "stable_before", "thresholds", "steps", "checks")},
        "decision": "rolled_back", "reason": f"rolled back: {why}", "took_over_canary": False,
        "stable_after": target.state().stable_version})
    announce(result, held["stack"], recorder, step_id)
    return result


def announce(result: RolloutResult, stack_name: str, recorder: Recorder, step_id: str) -> None:
    """The decision as an audit record (``canary_decision``) and as the run's artifacts."""
    recorder.record("canary_decision", {
        "stack": stack_name, "decision": result.decision, "reason": result.reason, "image": result.image,
        "stable_before": result.stable_before, "stable_after": result.stable_after,
        "took_over_canary": result.took_over_canary, "thresholds": result.thresholds.model_dump(),
        "steps": [s.model_dump() for s in result.steps]}, step_id=step_id)
    publish(result, stack_name)


def publish(result: RolloutResult, stack_name: str) -> None:
    """The evidence as Prefect artifacts of the running flow (markdown with chart, and a table)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    key = f"canary-{stack_name}"
    create_markdown_artifact(evidence.markdown(result, stack_name), key=key,
                             description=f"canary {result.decision}: {result.reason}")
    create_table_artifact(evidence.checks_table(result), key=f"{key}-checks",
                          description="canary checks over time")
