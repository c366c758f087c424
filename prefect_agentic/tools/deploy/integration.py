"""``service_integration``: the service and its cache in an ephemeral environment, checked, torn down."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from prefect_agentic.environments.ephemeral import ephemeral_environment, run_integration
from prefect_agentic.environments.labels import environments
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.tools.deploy.common import ServiceInput, docker_client, workspace_image


class IntegrationInput(ServiceInput):
    timeout_seconds: float = Field(default=120, gt=0, le=3600, description="Time for the checks.")


class IntegrationOutput(ToolOutput):
    image: str
    environment: str
    passed: int
    failed: int
    checks: dict[str, bool]
    torn_down: bool


class ServiceIntegrationTool(Tool):
    name: ClassVar[str] = "service_integration"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Integration checks of the service in an ephemeral environment."
    Input: ClassVar[type[ToolInput]] = IntegrationInput
    Output: ClassVar[type[ToolOutput]] = IntegrationOutput
    default_success: ClassVar[Mapping[str, Any]] = {"exit_code": 0}

    def run(self, args: IntegrationInput, ctx: ToolContext) -> Mapping[str, Any]:
        client = docker_client(ctx)
        image, _ = workspace_image(ctx, args)
        with ephemeral_environment(client, image, prefix=f"agentic-it-{ctx.step_id}") as env:
            result = run_integration(client, env, timeout=args.timeout_seconds)
        torn_down = env.name not in environments(client)
        output = {"exit_code": result["exit_code"], "log": result["log"], "image": image, "environment": env.name,
                  "passed": result["passed"], "failed": result["failed"], "checks": result["checks"],
                  "torn_down": torn_down}
        ctx.recorder.record("integration", {k: v for k, v in output.items() if k != "log"}, step_id=ctx.step_id)
        return output
