"""Single stack operations for operators and hand-written plans: deploy, shift, promote, roll back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from prefect_agentic.environments.stack import StackState
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.tools.deploy.common import (
    ServiceInput,
    StackInput,
    StackName,
    stack,
    workspace_image,
)


class StackOutput(ToolOutput):
    stable_version: str | None
    canary_version: str | None
    canary_share: int
    changed: bool


def _output(state: StackState, changed: bool) -> dict[str, Any]:
    return {"exit_code": 0, "stable_version": state.stable_version, "canary_version": state.canary_version,
            "canary_share": state.canary_weight, "changed": changed}


class DeployInput(ServiceInput):
    stack: StackName


class ServiceDeployTool(Tool):
    name: ClassVar[str] = "service_deploy"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Start the workspace's service as the stack's canary, at 0 % of the traffic."
    Input: ClassVar[type[ToolInput]] = DeployInput
    Output: ClassVar[type[ToolOutput]] = StackOutput

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "deploy"

    def run(self, args: DeployInput, ctx: ToolContext) -> Mapping[str, Any]:
        image, _ = workspace_image(ctx, args)
        target = stack(ctx, args.stack)
        changed = target.deploy_canary(image)
        return _output(target.state(), changed)


class TrafficInput(StackInput):
    percent: int = Field(ge=0, le=100, description="Share of the traffic the canary gets.")


class ServiceTrafficTool(Tool):
    name: ClassVar[str] = "service_traffic"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Shift a share of the stack's traffic to its canary."
    Input: ClassVar[type[ToolInput]] = TrafficInput
    Output: ClassVar[type[ToolOutput]] = StackOutput

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "shift-traffic"

    def run(self, args: TrafficInput, ctx: ToolContext) -> Mapping[str, Any]:
        target = stack(ctx, args.stack)
        target.set_canary_share(args.percent)
        return _output(target.state(), True)


class ServicePromoteTool(Tool):
    name: ClassVar[str] = "service_promote"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Make the canary's version stable, one replica at a time, then drop the canary."
    Input: ClassVar[type[ToolInput]] = StackInput
    Output: ClassVar[type[ToolOutput]] = StackOutput

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "deploy"

    def run(self, args: StackInput, ctx: ToolContext) -> Mapping[str, Any]:
        target = stack(ctx, args.stack)
        target.promote()
        return _output(target.state(), True)


class ServiceRollbackTool(Tool):
    name: ClassVar[str] = "service_rollback"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Give all traffic back to the stable replicas and remove the canary (never gated)."
    Input: ClassVar[type[ToolInput]] = StackInput
    Output: ClassVar[type[ToolOutput]] = StackOutput

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "rollback"

    def run(self, args: StackInput, ctx: ToolContext) -> Mapping[str, Any]:
        target = stack(ctx, args.stack)
        changed = target.rollback()
        ctx.recorder.record("canary_decision", {"stack": args.stack, "decision": "rolled_back",
                                                "reason": "service_rollback step", "changed": changed},
                            step_id=ctx.step_id)
        return _output(target.state(), changed)
