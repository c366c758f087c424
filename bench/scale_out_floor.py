"""The plain-Prefect floor of ``bench/scale_out.py``: one sandboxed second, without prefect-agentic.

``docker_floor`` is a flow with ONE task, configured as our step tasks are
(``prefect_agentic.tasks.step``: persisted JSON result, a retry, a cache key of
its own; ``refresh_cache`` as a ``fresh`` run), whose body makes the docker
calls one step of a one-step plan makes under our default sandbox mode,
``SandboxSettings().mode == "per_step"`` (``sandbox.runner.ContainerPerStep``):
a new container from the sandbox image with networking off (create, start,
wait for ``sleep 1`` to exit, remove). It is the ``docker run --rm`` floor of
``bench/step_overhead.py``, deployed: the bench deploys it from its checkout to
the same server and the same process pool as ``run-plan/default``, so the same
workers run both.

What our step does around those calls (workspace checkout and snapshot, the
workspace bind mounts, container hardening, output capture, the sandbox
concurrency slot, the audit record) is what the floor leaves out, and what the
ratio of the two throughputs charges to us.
"""

from __future__ import annotations

import os

import docker
from prefect import flow, task

IMAGE = os.environ.get("AGENTIC_SANDBOX_IMAGE", "prefect-agentic/sandbox:2")
LABEL = "prefect-agentic.bench"
"""Label on the floor's containers; its value is the bench's own token (to count and clean up only ours)."""


@task(persist_result=True, result_serializer="json", retries=1, refresh_cache=True,
      cache_key_fn=lambda _context, parameters: f"scale-out-floor-{parameters['key']}")
def sandboxed_sleep(key: str, label: str) -> dict[str, object]:
    """``sleep 1`` in a fresh container with networking off, as a per-step sandbox runs a command."""
    client = docker.from_env()
    container = client.containers.create(IMAGE, ["sleep", "1"], network_mode="none", detach=True,
                                         labels={LABEL: label})
    try:
        container.start()
        exit_code = int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)
    if exit_code != 0:
        raise RuntimeError(f"sleep 1 exited {exit_code} in container {container.id[:12]}")
    return {"key": key, "container": container.id, "exit_code": exit_code}


@flow(name="scale-out-floor")
def docker_floor(key: str, label: str) -> dict[str, object]:
    """One floor step: the whole work of a one-step plan, without prefect-agentic."""
    return sandboxed_sleep(key, label)
