"""What the deploy tools share: the Docker engine, the service image of the workspace, the stack."""

from __future__ import annotations

from typing import Annotated

import docker
from prefect_docker import DockerHost
from pydantic import Field

from prefect_agentic.environments.images import RUNTIME_IMAGE, build_service_image, service_files
from prefect_agentic.environments.stack import Stack
from prefect_agentic.tools.base import ToolContext, ToolInput

StackName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$",
                                 description="Name of the service's stack (`agentic canaries up NAME`).")]


class ServiceInput(ToolInput):
    path: str = Field(default=".", description="The service's directory in the workspace.")
    runtime_image: str = Field(default=RUNTIME_IMAGE, description="Image the service's code is added to.")


class StackInput(ToolInput):
    stack: StackName


def docker_client(ctx: ToolContext) -> docker.DockerClient:
    """The engine the step's sandbox uses (its DockerHost block), else the default one."""
    client = getattr(ctx.sandbox, "client", None)
    return client if isinstance(client, docker.DockerClient) else DockerHost().get_client()


def workspace_image(ctx: ToolContext, args: ServiceInput) -> tuple[str, bool]:
    """The image of the service as the workspace holds it (built once, then found by its content tag)."""
    return build_service_image(docker_client(ctx), service_files(ctx.files, args.path), args.runtime_image)


def stack(ctx: ToolContext, name: str) -> Stack:
    return Stack(docker_client(ctx), name)
