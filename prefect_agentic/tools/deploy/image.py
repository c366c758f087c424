"""``service_image``: build the service's image from the workspace, offline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.tools.deploy.common import ServiceInput, workspace_image


class ServiceImageOutput(ToolOutput):
    image: str
    built: bool


class ServiceImageTool(Tool):
    name: ClassVar[str] = "service_image"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Build the service's image from the workspace (tagged by content, no network)."
    Input: ClassVar[type[ToolInput]] = ServiceInput
    Output: ClassVar[type[ToolOutput]] = ServiceImageOutput

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "build"

    def run(self, args: ServiceInput, ctx: ToolContext) -> Mapping[str, Any]:
        image, built = workspace_image(ctx, args)
        ctx.logger.info("service image %s (%s)", image, "built" if built else "already built")
        return {"exit_code": 0, "image": image, "built": built}
