"""An ephemeral environment: the service and its cache on a private network, for one run.

``ephemeral_environment`` is a context manager that removes everything it made when the block
ends, whatever ends it. A process killed inside the block leaves labelled objects, which the
next ``ephemeral_environment`` (and ``agentic canaries clean``) removes by label.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import docker
import docker.errors

from prefect_agentic.environments.images import RUNTIME_IMAGE
from prefect_agentic.environments.labels import (
    EPHEMERAL,
    environments,
    labels,
    owner_is_gone,
    remove_environment,
)

MEMORY = "256m"


@dataclass(frozen=True)
class Ephemeral:
    name: str
    network: str
    service_url: str
    image: str


@contextmanager
def ephemeral_environment(client: docker.DockerClient, image: str, prefix: str = "agentic-env",
                          env: dict[str, str] | None = None) -> Iterator[Ephemeral]:
    """Start cache + service on an internal network; tear both down on exit."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    _remove_stale(client)
    try:
        network = client.networks.create(name, driver="bridge", internal=True,
                                          labels=labels(name, EPHEMERAL, "network"))
        common = {"network": network.name, "detach": True, "mem_limit": MEMORY, "pids_limit": 256}
        client.containers.run(RUNTIME_IMAGE, ["redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "no"],
                              name=f"{name}-cache", hostname="cache", labels=labels(name, EPHEMERAL, "cache"),
                              user="redis", **common)
        client.containers.run(image, name=f"{name}-service", hostname="service",
                              labels=labels(name, EPHEMERAL, "service", image),
                              environment={"CACHE_HOST": f"{name}-cache", **(env or {})}, **common)
        yield Ephemeral(name, network.name, f"http://{name}-service:8000", image)
    finally:
        remove_environment(client, name)


def _remove_stale(client: docker.DockerClient) -> None:
    """Ephemeral environments whose owning process on this host is gone: nothing outlives its run."""
    for name, owner in environments(client, EPHEMERAL, with_owner=True).items():
        if owner_is_gone(owner):
            remove_environment(client, name)


def run_integration(client: docker.DockerClient, environment: Ephemeral, timeout: float = 120) -> dict[str, object]:
    """Run the service's ``integration.py`` next to it; returns its JSON result and exit code."""
    container = client.containers.run(
        environment.image, ["python3", "/app/integration.py", environment.service_url],
        name=f"{environment.name}-check", network=environment.network, detach=True, mem_limit=MEMORY,
        labels=labels(environment.name, EPHEMERAL, "check"))
    try:
        status = container.wait(timeout=timeout)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    result: dict[str, object] = {"exit_code": int(status.get("StatusCode", 1)), "log": output[-4000:]}
    last = output.strip().splitlines()[-1] if output.strip() else ""
    try:
        result.update(json.loads(last))
    except json.JSONDecodeError:
        result.update(checks={}, passed=0, failed=1)
    return result
