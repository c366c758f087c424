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

``docker_floor_same_work`` is the second floor: plain Prefect, git and Docker
doing the work a one-step run of ours does around that second, each with the
same commands or API calls, but none of our code: the run renamed from its
parameters, a size-limited workspace (sparse ext4 image, loop mount) with a
clone checked out at the commit, a slot of the global sandbox limit
(Prefect's client, leased: ``concurrency()`` waits ~2 s in its acquisition
service here, see ``bench/slot_acquire.py``), the container with our hardening, bind mounts and
output capture, the step's events, the summary and step-table artifacts, and
the unmount; ``bench/scale_out.py`` deploys it tagged ``agentic``, so that the
crash automations watch its runs as they watch ours. Ours against it is what
our own code costs; the first floor against it is what that work costs in
Prefect, git and Docker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
from docker.models.containers import Container
from docker.types import LogConfig, Mount
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.exceptions import PrefectHTTPStatusError
from prefect.runtime import flow_run

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


WORKSPACE_SIZE = 8 * 1024**3
"""``SandboxSettings().workspace_size`` (8g)."""
SANDBOX_USER = "10001:10001"
"""The uid:gid our sandbox runs commands as when the host side is root."""
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def make_workspace_image(image: Path) -> None:
    """A sparse ext4 image of ``WORKSPACE_SIZE``, lazily initialised, as a size-limited workspace of ours is."""
    with open(image, "wb") as handle:
        handle.truncate(WORKSPACE_SIZE)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                    "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1", str(image)], check=True)


def hardened_container(client: docker.DockerClient, command: list[str], workspace: str,
                       labels: dict[str, str] | None = None) -> Container:
    """A container created as our per-step sandbox creates one: hardening, limits, workspace and read-only .git."""
    return client.containers.create(
        IMAGE, command, network_mode="none", detach=True, labels=labels or {},
        working_dir="/workspace", user=SANDBOX_USER, environment={"HOME": "/tmp"},
        mem_limit="1g", nano_cpus=10**9, pids_limit=512,
        cap_drop=["ALL"], security_opt=["no-new-privileges"], read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=256m,mode=1777"},
        log_config=LogConfig(type=LogConfig.types.NONE),
        mounts=[Mount("/workspace", workspace, type="bind"),
                Mount("/workspace/.git", f"{workspace}/.git", type="bind", read_only=True)])


def _git(workspace: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(workspace), *args], check=True, env=GIT_ENV, capture_output=True)


@contextmanager
def sandbox_slot() -> Iterator[None]:
    """One slot of ``agentic-sandboxes`` (made by ``agentic init``), taken and given back through the API."""
    with get_client(sync_client=True) as client:
        while True:
            try:
                lease = client.increment_concurrency_slots_with_lease(
                    names=["agentic-sandboxes"], slots=1, mode="concurrency", lease_duration=60)
                break
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 423:  # 423: no free slot yet
                    raise
                time.sleep(float(exc.response.headers.get("Retry-After", 1)))
        try:
            yield
        finally:
            client.release_concurrency_slots_with_lease(lease_id=lease.json()["lease_id"])


def _event(name: str, key: str) -> None:
    emit_event(event=f"bench.same-work.{name}", resource={"prefect.resource.id": f"bench.same-work.{key}"},
               payload={"key": key})


@task(persist_result=True, result_serializer="json", retries=1, refresh_cache=True,
      cache_key_fn=lambda _context, parameters: f"scale-out-same-work-{parameters['key']}")
def hardened_sleep(key: str, label: str, workspace: str) -> dict[str, object]:
    """``sleep 1`` as our per-step sandbox runs it: a slot of the sandbox limit, hardening, mounts, capture."""
    _event("step.started", key)
    client = docker.from_env()
    with sandbox_slot():
        container = hardened_container(client, ["sleep", "1"], workspace, {LABEL: label})
        try:
            stream = container.attach(stdout=True, stderr=True, stream=True, demux=True, logs=False)
            container.start()
            exit_code = int(container.wait()["StatusCode"])
            output = list(stream)
            container.reload()
        finally:
            container.remove(force=True)
    if exit_code != 0:
        raise RuntimeError(f"sleep 1 exited {exit_code} in container {container.id[:12]}")
    _event("step.completed", key)
    return {"key": key, "container": container.id, "exit_code": exit_code, "chunks": len(output)}


@flow(name="scale-out-floor-same-work", flow_run_name=lambda: f"same work {flow_run.parameters['key']}")
def docker_floor_same_work(key: str, label: str, repo: str) -> dict[str, object]:
    """The first floor's step plus the work a one-step run of ours does around it, without our code."""
    _event("run.started", key)
    root = Path(tempfile.mkdtemp(prefix="scale-out-same-work-"))
    image, workspace = root / "workspace.img", root / "workspace"
    workspace.mkdir()
    make_workspace_image(image)
    subprocess.run(["mount", "-o", "loop,nosuid,nodev,noinit_itable", str(image), str(workspace)], check=True)
    try:
        (workspace / "lost+found").rmdir()
        subprocess.run(["git", "clone", "-q", "--no-checkout", repo, str(workspace)], check=True, env=GIT_ENV)
        head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], check=True, env=GIT_ENV,
                              capture_output=True, text=True).stdout.strip()
        _git(workspace, "cat-file", "-e", f"{head}^{{commit}}")
        _git(workspace, "checkout", "-q", "-f", head)
        _git(workspace, "clean", "-q", "-f", "-d", "-x")
        os.chown(workspace, *map(int, SANDBOX_USER.split(":")))
        result = hardened_sleep(key, label, str(workspace))
        create_markdown_artifact(f"# same work {key}\n\n| step | status |\n|---|---|\n| work | completed |",
                                 key=f"same-work-summary-{key}")
        create_table_artifact([{"step": "work", "status": "completed"}], key=f"same-work-steps-{key}")
        _event("run.completed", key)
        return result
    finally:
        subprocess.run(["umount", str(workspace)], check=False)
        shutil.rmtree(root, ignore_errors=True)
