"""Docker sandboxes that run step commands.

Two modes share one contract (``Sandbox.run``):

* ``ContainerPerStep`` starts a fresh container for every command and removes
  it afterwards: nothing a command leaves behind outside the workspace can
  reach the next one.
* ``WarmContainer`` starts one container per run and runs each command in it
  with ``docker exec``: no container start-up per step.

Both are secure by default: an unprivileged uid, every capability dropped
and ``no-new-privileges``, a read-only root filesystem with a size-capped
tmpfs ``/tmp``, no network unless a named one is allowed, memory/CPU/process
limits, and no host path but the run workspace at ``/workspace`` (its ``.git``
read-only, so a command cannot plant hooks or configuration that host-side
git would later obey) and, when the settings name one, a wheelhouse read-only
at ``/wheelhouse`` (wheels to install without a network). The environment is only what the caller gives. Output
is captured up to a cap, the command is killed at its timeout, and containers
are labelled so that leftovers of a killed process are removed by the next run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.types import LogConfig, Mount, Ulimit

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.concurrency import holding
from prefect_agentic.errors import SandboxError, SandboxImageMissingError, SandboxUnavailableError
from prefect_agentic.sandbox.limits import CgroupCounters, CounterSampler, read_counters, task_count
from prefect_agentic.sandbox.result import CappedBuffer, CommandResult

WORKSPACE_MOUNT = "/workspace"
WHEELHOUSE_MOUNT = "/wheelhouse"
LABEL_MANAGED = "org.prefect-agentic.managed"
LABEL_RUN = "org.prefect-agentic.run"
KILL_GRACE_SECONDS = 5.0
OOM_EVENT_GRACE_SECONDS = 5.0
"""How long a SIGKILLed container's OOM event may trail its exit (gVisor delivers it late at times)."""
SIGKILL_EXIT_CODE = 137
BASE_ENV = {
    "HOME": "/tmp",
    # The workspace belongs to another uid than git inside expects; trusting it is
    # safe there because nothing the container does to .git reaches the host.
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "safe.directory",
    "GIT_CONFIG_VALUE_0": "*",
}


CommandStarted = Callable[["_ContainerSandbox", Container], None]
command_started: ContextVar[CommandStarted | None] = ContextVar("agentic_command_started", default=None)
"""Called (in the calling thread) once a command runs in its container; a chaos run kills it there."""


class Sandbox(Protocol):
    """Runs commands in containers with the run workspace mounted."""

    image_id: str

    def run(
        self,
        command: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        network: str | None = None,
    ) -> CommandResult: ...

    def step_slot(self) -> AbstractContextManager[None]:
        """The global concurrency slot(s) a step holds while its tool uses this sandbox."""
        ...

    def close(self) -> None: ...


def open_sandbox(settings: SandboxSettings, workspace: Path, run_key: str, image_id: str | None = None) -> Sandbox:
    """A sandbox of the configured mode; removes containers a killed earlier run left.

    With ``image_id`` (a run's pinned image digest), containers start from that
    image rather than from whatever the configured tag names now.
    """
    client = _client(settings)
    image_id = _image_id(client, image_id or settings.image)
    remove_run_containers(client, run_key)
    cls = WarmContainer if settings.mode == "warm" else ContainerPerStep
    return cls(client, settings, workspace, run_key, image_id)


def remove_run_containers(client: docker.DockerClient, run_key: str | None = None) -> int:
    """Force-remove managed containers (of one run, or all); returns how many."""
    labels = [f"{LABEL_MANAGED}=true"] + ([f"{LABEL_RUN}={run_key}"] if run_key else [])
    removed = 0
    for container in client.containers.list(all=True, filters={"label": labels}):
        removed += force_remove(container)
    return removed


def force_remove(container: Container) -> bool:
    """Remove ``container`` even if running; False if it is gone or another removal has it.

    Two removals of one container race when a run is interrupted (the step's
    own clean-up and the run's); the engine answers the later one 409 Conflict
    "removal ... is already in progress", which means the same as done.
    """
    try:
        container.remove(force=True)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409 and "already in progress" in str(exc.explanation or exc):
            return False
        raise


_clients: dict[tuple[int, str], docker.DockerClient] = {}
_clients_lock = threading.Lock()


def _client(settings: SandboxSettings) -> docker.DockerClient:
    """A Docker client of ``settings.docker_host`` that answered a ping just now.

    One client per process and engine (its connection pool is thread-safe):
    making one asks the engine for its version, and a run asked twice (its
    image pin, then its sandbox). A client whose ping fails is replaced once
    before the engine counts as unreachable (the engine may have restarted).
    The process id is part of the key: a forked process never shares its
    parent's connections.
    """
    key = (os.getpid(), settings.docker_host.model_dump_json())
    with _clients_lock:
        client = _clients.get(key)
    if client is not None and _answers(client):
        return client
    try:
        client = settings.docker_host.get_client()
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise SandboxError(
            f"cannot reach the Docker engine ({exc}); start it (`dockerd` or `make setup`) "
            "or point the sandbox settings' docker_host at a running engine"
        ) from None
    with _clients_lock:
        _clients[key] = client
    return client


def _answers(client: docker.DockerClient) -> bool:
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.RequestException):
        return False


def _image_id(client: docker.DockerClient, image: str) -> str:
    try:
        return str(client.images.get(image).id)
    except docker.errors.ImageNotFound:
        raise SandboxImageMissingError(
            f"sandbox image '{image}' is not on the Docker engine; build it with "
            f"`scripts/build-sandbox-image.sh {image}` (or `make setup`)"
        ) from None


class _ContainerSandbox:
    """What both modes share: container options, output capture, cleanup."""

    def __init__(
        self,
        client: docker.DockerClient,
        settings: SandboxSettings,
        workspace: Path,
        run_key: str,
        image_id: str,
    ) -> None:
        self.client = client
        self.settings = settings
        self.workspace = workspace
        self.run_key = run_key
        self.image_id = image_id
        self._live: set[str] = set()
        self._live_lock = threading.Lock()
        self._killed: dict[str, str] = {}
        """Containers this sandbox killed under a running command, and why (their commands lost the sandbox)."""
        self._limits = settings.concurrency_limits(run_key)

    def _slot(self) -> AbstractContextManager[None]:
        return holding(self._limits, self.settings.slot_lease_seconds)

    def _create(
        self, command: Sequence[str], env: Mapping[str, str], network: str | None = None
    ) -> Container:
        s = self.settings
        net = network or s.network
        networking: dict[str, Any] = {"network_mode": "none"} if net == "none" else {"network": net}
        hardening: dict[str, Any] = {}
        if s.drop_capabilities:
            hardening.update(cap_drop=["ALL"], security_opt=["no-new-privileges"])
        if s.read_only_root:
            hardening.update(read_only=True,
                             tmpfs={"/tmp": f"rw,nosuid,nodev,size={s.tmp_size},mode=1777"})
        mounts = [Mount(WORKSPACE_MOUNT, str(self.workspace), type="bind")]
        if (self.workspace / ".git").is_dir():
            mounts.append(
                Mount(f"{WORKSPACE_MOUNT}/.git", str(self.workspace / ".git"), type="bind", read_only=True)
            )
        if s.wheelhouse:
            mounts.append(Mount(WHEELHOUSE_MOUNT, str(Path(s.wheelhouse).resolve()), type="bind",
                                read_only=True))
        try:
            container = self.client.containers.create(
                self.image_id,
                command=list(command),
                working_dir=WORKSPACE_MOUNT,
                user=s.effective_user(),
                environment={**BASE_ENV, **s.env, **env},
                mounts=mounts,
                mem_limit=s.memory,
                nano_cpus=int(s.cpus * 1e9),
                **_process_limits(s),
                labels={LABEL_MANAGED: "true", LABEL_RUN: self.run_key},
                runtime=s.runtime,
                log_config=LogConfig(type=LogConfig.types.NONE),
                detach=True,
                **networking,
                **hardening,
            )
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot create a sandbox container: {exc.explanation or exc}") from None
        with self._live_lock:
            self._live.add(container.id)
        return container

    def _remove(self, container: Container) -> None:
        try:
            force_remove(container)
        except requests.exceptions.ConnectionError:
            return  # the engine is away: it stays in _live, and close() removes it when the run ends
        with self._live_lock:
            self._live.discard(container.id)

    def kill(self, container: Container, reason: str) -> bool:
        """Kill ``container`` under its running command(s), which then fail as having lost the sandbox.

        False if it was no longer running (the command had ended already).
        """
        self._killed[container.id] = reason
        try:
            container.kill()
        except docker.errors.APIError:
            del self._killed[container.id]
            return False
        return True

    def _notify_started(self, container: Container) -> None:
        hook = command_started.get()
        if hook is not None:
            hook(self, container)

    def close(self) -> None:
        """Remove every container this sandbox still has (also after Ctrl-C)."""
        with self._live_lock:
            live = list(self._live)
        for container_id in live:
            try:
                force_remove(self.client.containers.get(container_id))
            except docker.errors.NotFound:
                pass
            with self._live_lock:
                self._live.discard(container_id)

    def _capture(self, stream: Iterator[tuple[bytes | None, bytes | None]]) -> tuple[CappedBuffer, CappedBuffer, threading.Thread]:
        out = CappedBuffer(self.settings.output_limit_bytes)
        err = CappedBuffer(self.settings.output_limit_bytes)

        def pump() -> None:
            try:
                for chunk_out, chunk_err in stream:
                    if chunk_out:
                        out.write(chunk_out)
                    if chunk_err:
                        err.write(chunk_err)
            except (requests.RequestException, OSError, ValueError):
                pass  # the stream ends abruptly when the container is killed

        thread = threading.Thread(target=pump, name="sandbox-output", daemon=True)
        thread.start()
        return out, err, thread


class ContainerPerStep(_ContainerSandbox):
    """A fresh container for every command, always removed afterwards.

    A step holds its concurrency slot while its tool runs (once per step, not
    per command: a tool's commands run one after the other).
    """

    def step_slot(self) -> AbstractContextManager[None]:
        return self._slot()

    def run(
        self,
        command: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        network: str | None = None,
    ) -> CommandResult:
        with _engine_reachable(command):
            return self._run(command, timeout, env, network)

    def _run(self, command: Sequence[str], timeout: float, env: Mapping[str, str] | None,
             network: str | None) -> CommandResult:
        container = self._create(command, env or {}, network)
        try:
            stream = container.attach(stdout=True, stderr=True, stream=True, demux=True, logs=False)
            out, err, pump = self._capture(stream)
            started, started_at = time.monotonic(), time.time()
            container.start()
            sampler = CounterSampler(container.id).start()
            self._notify_started(container)
            timed_out = False
            try:
                exit_code = int(container.wait(timeout=timeout)["StatusCode"])
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out = True
                sampler.stop()  # read the counters while the container still exists
                _kill(container)
                exit_code = int(container.wait(timeout=30)["StatusCode"])
            duration = time.monotonic() - started
            counters = sampler.stop()
            pump.join(timeout=10)
            container.reload()
            oom = bool(container.attrs["State"].get("OOMKilled")) or (counters is not None and counters.oom_kills > 0)
            if (exit_code == SIGKILL_EXIT_CODE and not oom and not timed_out
                    and container.id not in self._killed):
                oom = _oom_event_logged(self.client, container.id, started_at)
        except docker.errors.APIError as exc:
            raise SandboxError(f"sandbox container failed: {exc.explanation or exc}") from None
        finally:
            self._remove(container)
        return _result(exit_code, out, err, duration, timed_out, counters, oom_flag=oom,
                       lost=self._killed.pop(container.id, None))


class WarmContainer(_ContainerSandbox):
    """One long-lived container per run; each command is a ``docker exec`` in it.

    The command is wrapped in coreutils ``timeout`` so it (and its process
    group) is killed inside the container; if even that does not end it, the
    whole container is killed and a new one is started for the next command.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._container: Container | None = None
        self._held = ExitStack()
        self._start_lock = threading.Lock()
        self._exec_lock = threading.Lock()
        self._running = 0
        self._own_network = ContainerPerStep(*args, **kwargs)
        self._own_network._live, self._own_network._live_lock = self._live, self._live_lock

    def _warm(self) -> Container:
        with self._start_lock:
            if self._container is None:
                # The container is the sandbox: it holds its slot as long as it lives, so
                # steps in it pay nothing for the limit (see bench/step_overhead.py).
                self._held.enter_context(self._slot())
                try:
                    container = self._create(["sleep", "infinity"], {})
                    container.start()
                except BaseException:
                    self._held.close()  # no container, no slot
                    raise
                self._container = container
            return self._container

    def step_slot(self) -> AbstractContextManager[None]:
        return nullcontext()

    def run(
        self,
        command: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        network: str | None = None,
    ) -> CommandResult:
        if network and network != self.settings.network:
            # A warm container has one network; a step allowed another gets its own container.
            return self._own_network.run(command, timeout=timeout, env=env, network=network)
        with _engine_reachable(command):
            container = self._warm()
            wrapped = ["timeout", "-k", f"{KILL_GRACE_SECONDS:g}", f"{timeout:g}", *command]
            with self._exec_lock:
                self._running += 1
            try:
                return self._exec(container, wrapped, timeout, env)
            finally:
                with self._exec_lock:
                    self._running -= 1
                    if self._running == 0:
                        self.settle(container)

    def _exec(self, container: Container, wrapped: list[str], timeout: float,
              env: Mapping[str, str] | None) -> CommandResult:
        api = self.client.api
        try:
            exec_id = api.exec_create(
                container.id,
                wrapped,
                environment={**BASE_ENV, **self.settings.env, **(env or {})},
                workdir=WORKSPACE_MOUNT,
                user=self.settings.effective_user(),
            )["Id"]
            before = read_counters(container.id)
            started = time.monotonic()
            stream = api.exec_start(exec_id, stream=True, demux=True)
            out, err, pump = self._capture(stream)
            self._notify_started(container)
            pump.join(timeout=timeout + 2 * KILL_GRACE_SECONDS)
            duration = time.monotonic() - started
            if pump.is_alive():  # not even SIGKILL inside ended it: drop the container
                counters = _delta(read_counters(container.id), before)
                self._discard(container)
                pump.join(timeout=10)
                return _result(-9, out, err, duration, True, counters)
            info = api.exec_inspect(exec_id)
            counters = _delta(read_counters(container.id), before)
            exit_code = int(info.get("ExitCode") or 0)
            lost = self._killed.get(container.id)
            stopped = _stopped_with(container) if exit_code != 0 and lost is None else None
        except docker.errors.APIError as exc:
            raise SandboxError(f"sandbox exec failed: {exc.explanation or exc}") from None
        timed_out = duration >= timeout and exit_code in (124, 137)
        if stopped is not None or lost is not None:  # never exec into it again: the next command gets a new one
            self._discard(container)
        return _result(exit_code, out, err, duration, timed_out, counters, sandbox_exit_code=stopped, lost=lost)

    def settle(self, container: Container) -> None:
        """Kill every process commands left behind in the warm container (all but its init).

        A step must not leave a process that keeps writing the workspace while
        the host snapshots it, or while the next step runs. ``kill -1`` from
        inside reaches every process of the sandbox uid except PID 1. It runs
        when the last running command ended (steps that only read may run in
        parallel in the container; a writing step always runs alone), with new
        commands held back until it is done.

        When the container's cgroup holds nothing but its init (``sleep``, one
        task), nothing was left behind and the kill is skipped: it is a second
        ``docker exec``, which cost 45 ms, a third of a warm step
        (``bench/step_overhead.py``). Anything else (a leftover, a zombie, a
        runtime whose own processes share the cgroup, an unreadable cgroup)
        gets the kill.
        """
        if task_count(container.id) == 1:
            return
        api = self.client.api
        try:
            exec_id = api.exec_create(container.id, ["sh", "-c", "kill -KILL -1 2>/dev/null; true"],
                                      user=self.settings.effective_user())["Id"]
            api.exec_start(exec_id)
        except (docker.errors.APIError, requests.exceptions.ConnectionError):
            self._discard(container)  # cannot make sure it is quiet: never reuse it

    def _discard(self, container: Container) -> None:
        with self._start_lock:
            if self._container is container:
                self._container = None
                self._held.close()
        self._remove(container)

    def close(self) -> None:
        with self._start_lock:
            self._container = None
            self._held.close()
        super().close()


def _oom_event_logged(client: docker.DockerClient, container_id: str, since: float) -> bool:
    """Whether the engine logged an OOM kill of the container, waiting a little for a late one.

    ``State.OOMKilled`` and the cgroup counters can both miss an OOM kill of a
    container that has exited: under gVisor the runtime's OOM event may reach the
    engine after the exit, and the container's cgroup is gone by then. The engine's
    event log has the event either way. Only asked for an unexplained SIGKILL, so
    the wait costs nothing on the usual paths.
    """
    stream = client.events(since=int(since) - 1, until=int(time.time() + OOM_EVENT_GRACE_SECONDS),
                           filters={"type": "container", "container": container_id, "event": "oom"},
                           decode=True)
    try:
        return next(iter(stream), None) is not None
    finally:
        stream.close()


def _delta(after: CgroupCounters | None, before: CgroupCounters | None) -> CgroupCounters | None:
    return after.since(before) if after is not None else None


def _result(
    exit_code: int,
    out: CappedBuffer,
    err: CappedBuffer,
    duration: float,
    timed_out: bool,
    counters: CgroupCounters | None,
    *,
    oom_flag: bool = False,
    sandbox_exit_code: int | None = None,
    lost: str | None = None,
) -> CommandResult:
    return CommandResult(
        exit_code=exit_code,
        stdout=out.text(),
        stderr=err.text(),
        duration_s=duration,
        timed_out=timed_out,
        oom_killed=oom_flag or bool(counters and counters.oom_kills > 0),
        pids_limit_hit=bool(counters and counters.pids_refused > 0),
        cpu_seconds=round(counters.cpu_ns / 1e9, 3) if counters else None,
        output_truncated=out.truncated or err.truncated,
        sandbox_exit_code=sandbox_exit_code,
        sandbox_lost=lost,
    )


@contextmanager
def _engine_reachable(command: Sequence[str]) -> Iterator[None]:
    """A Docker call refused by the engine (socket gone, daemon restarting) as a retryable error."""
    try:
        yield
    except requests.exceptions.ConnectionError as exc:
        raise SandboxUnavailableError(
            f"the Docker engine did not answer while running {list(command)!r} ({exc}); "
            "a retry tries again once it is back") from None


def _stopped_with(container: Container) -> int | None:
    """The exit code of a warm container that is no longer running, None while it runs.

    Asked only after a command failed (a container that died under a command
    fails it): a command can take the sandbox down with it, e.g. gVisor's kernel
    reaching the container's cgroup backstop (see ``_process_limits``).
    """
    container.reload()
    state = container.attrs["State"]
    return None if state.get("Running") else int(state.get("ExitCode") or 0)


def _process_limits(s: SandboxSettings) -> dict[str, Any]:
    """How ``pids`` becomes a limit on the command's processes under either runtime.

    Under runc the container's pids cgroup holds exactly the command's processes.
    Under gVisor on the ptrace platform it also holds the sandbox kernel's own
    threads and a host stub per address space (3-4 host pids per process here),
    so a cgroup limit of ``pids`` stops the whole sandbox long before the command
    has that many processes. There the limit is RLIMIT_NPROC, which gVisor
    enforces inside its own kernel (a refused fork, as under runc), and the
    cgroup keeps a generous backstop. (Not under runc: there RLIMIT_NPROC would
    count every process of the sandbox uid on the host.)
    """
    if s.runtime != "runsc":
        return {"pids_limit": s.pids}
    return {"pids_limit": s.pids * 8 + 256, "ulimits": [Ulimit(name="nproc", soft=s.pids, hard=s.pids)]}


def _kill(container: Container) -> None:
    try:
        container.kill()
    except docker.errors.APIError:
        pass  # already gone


@dataclass(frozen=True)
class ImageInfo:
    """An image as the engine knows it: its content digest (image id) and registry digests."""

    id: str
    repo_digests: list[str]


def inspect_image(settings: SandboxSettings, ref: str) -> ImageInfo | None:
    """The engine's image ``ref`` (a tag or an image id), or None when the engine does not have it."""
    try:
        image = _client(settings).images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    return ImageInfo(str(image.id), list(image.attrs.get("RepoDigests") or []))


def check_ready(settings: SandboxSettings) -> str:
    """Fail fast, before a run starts, if the engine or the image is missing; returns the image id."""
    return _image_id(_client(settings), settings.image)
