"""Labels on every container and network of an environment, and the clean-up that uses them."""

from __future__ import annotations

import os
import socket

import docker
import docker.errors

LABEL_ENVIRONMENT = "org.prefect-agentic.environment"
LABEL_KIND = "org.prefect-agentic.environment-kind"
LABEL_ROLE = "org.prefect-agentic.role"
LABEL_VERSION = "org.prefect-agentic.version"
LABEL_OWNER = "org.prefect-agentic.owner"

EPHEMERAL = "ephemeral"
STACK = "stack"


def labels(environment: str, kind: str, role: str | None = None, version: str | None = None) -> dict[str, str]:
    found = {LABEL_ENVIRONMENT: environment, LABEL_KIND: kind, LABEL_OWNER: owner()}
    if role:
        found[LABEL_ROLE] = role
    if version:
        found[LABEL_VERSION] = version
    return found


def owner() -> str:
    """The process that made an object, as ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_gone(value: str) -> bool:
    """Whether the owning process is known to be dead (only decidable on this host)."""
    host, _, pid = value.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def environments(client: docker.DockerClient, kind: str | None = None,
                 with_owner: bool = False) -> dict[str, list[str]] | dict[str, str]:
    """Environment name -> its containers' names (or its owner); empty networks count too."""
    wanted = [LABEL_ENVIRONMENT] + ([f"{LABEL_KIND}={kind}"] if kind else [])
    found: dict[str, list[str]] = {}
    owners: dict[str, str] = {}
    for container in client.containers.list(all=True, filters={"label": wanted}):
        name = container.labels[LABEL_ENVIRONMENT]
        found.setdefault(name, []).append(container.name)
        owners.setdefault(name, container.labels.get(LABEL_OWNER, ""))
    for network in client.networks.list(filters={"label": wanted}):
        name = network.attrs["Labels"][LABEL_ENVIRONMENT]
        found.setdefault(name, [])
        owners.setdefault(name, network.attrs["Labels"].get(LABEL_OWNER, ""))
    return owners if with_owner else found


def remove_environment(client: docker.DockerClient, environment: str) -> int:
    """Force-remove an environment's containers, then its networks; returns the containers removed."""
    selector = {"label": [f"{LABEL_ENVIRONMENT}={environment}"]}
    removed = 0
    for container in client.containers.list(all=True, filters=selector):
        try:
            container.remove(force=True)
            removed += 1
        except docker.errors.NotFound:
            pass
    for network in client.networks.list(filters=selector):
        try:
            network.remove()
        except docker.errors.NotFound:
            pass
    return removed
