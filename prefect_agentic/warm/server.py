"""The warm process: Prefect and the pack imported once, a forked child per flow run.

Started by the first launcher of a worker (``launch.start_warm_process``) and
ended when that worker ends. It must stay single-threaded until it forks (a
fork copies only the calling thread, so a lock another thread held would stay
locked in the child); it checks that before serving and refuses otherwise.
Each child returns from ``serve`` to the top of this module and runs the engine
there, so it ends like any ``python -m prefect.engine`` process (atexit
handlers, non-daemon threads joined).
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_agentic.warm.launch import MAX_MESSAGE

WARM_IMPORTS = ("prefect.engine", "prefect.flow_engine", "prefect.deployments.steps.core",
                "prefect_agentic.flows.run_plan")
"""What a cold engine process for a run-plan flow run imports before it runs anything."""


@dataclass
class EngineRequest:
    """What a launcher asked for: the engine run with its streams, environment and directory."""

    streams: list[int]
    env: dict[str, str]
    cwd: str
    argv: list[str]
    launcher: int


def main() -> None:
    path, owner = Path(sys.argv[1]), int(sys.argv[2])
    request = serve(path, owner)
    if request is not None:  # in a forked child
        run_engine(request)


def serve(path: Path, owner: int) -> EngineRequest | None:
    """Fork a child per request until worker ``owner`` ends; returns only in a child, with its request."""
    lock = open(path.with_suffix(".lock"), "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None  # another warm process for this path is starting or serving
    started = time.monotonic()
    _warm_up()
    if threading.active_count() != 1:
        _log(f"not serving: importing started threads {[t.name for t in threading.enumerate()]}")
        return None
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    listener.listen(16)
    _log(f"serving {path} for worker {owner}, warm after {time.monotonic() - started:.2f}s")
    try:
        request = _loop(listener, owner)
        if request is not None:
            lock.close()  # the child must not keep the warm process's lock
        return request
    finally:
        listener.close()
        if os.getpid() == _SERVER_PID:
            path.unlink(missing_ok=True)


_SERVER_PID = os.getpid()


def _warm_up() -> None:
    """Import what every run imports before its first step, and every installed tool."""
    for module in WARM_IMPORTS:
        __import__(module)
    from prefect_agentic.tools.registry import default_registry

    default_registry().names()  # imports every tool module (some import the model layer)
    default_registry.cache_clear()  # a child scans the entry points again: a tool installed since is found


def _loop(listener: socket.socket, owner: int) -> EngineRequest | None:
    selector = selectors.DefaultSelector()
    owner_fd = os.pidfd_open(owner)
    selector.register(owner_fd, selectors.EVENT_READ, "owner")
    selector.register(listener, selectors.EVENT_READ, "listener")
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, launcher's connection)
    while True:
        for key, _ in selector.select():
            if key.data == "owner":
                _log(f"worker {owner} ended; stopping")
                return None
            if key.data == "listener":
                request, connection = _accept(listener)
                if request is None:
                    continue
                pid = os.fork()
                if pid == 0:
                    _close_in_child(selector, [owner_fd, listener, *(c for _, c in children.values()),
                                               *children])
                    connection.close()
                    return request
                for fd in request.streams:
                    os.close(fd)
                _send(connection, {"pid": pid})
                child_fd = os.pidfd_open(pid)
                children[child_fd] = (pid, connection)
                selector.register(child_fd, selectors.EVENT_READ, "child")
                _log(f"forked {pid} for flow run {request.env.get('PREFECT__FLOW_RUN_ID', '?')}")
            else:
                pid, connection = children.pop(key.fd)
                selector.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                _send(connection, _outcome(status))
                connection.close()


def _accept(listener: socket.socket) -> tuple[EngineRequest | None, socket.socket]:
    connection, _ = listener.accept()
    try:
        peer = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        if int.from_bytes(peer[4:8], sys.byteorder) != os.getuid():
            raise PermissionError("launcher of another user")
        message, fds, _, _ = socket.recv_fds(connection, MAX_MESSAGE * 16, 3)
        data: dict[str, Any] = json.loads(message)
        if len(fds) != 3:
            raise ValueError(f"{len(fds)} streams instead of 3")
        return EngineRequest(streams=fds, env=dict(data["env"]), cwd=str(data["cwd"]),
                             argv=[str(a) for a in data["argv"]], launcher=int(data["launcher"])), connection
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _log(f"refused a request: {exc}")
        connection.close()
        return None, connection


def _close_in_child(selector: selectors.BaseSelector, resources: list[Any]) -> None:
    selector.close()
    for resource in resources:
        if isinstance(resource, int):
            os.close(resource)
        else:
            resource.close()


def _send(connection: socket.socket, message: dict[str, int]) -> None:
    try:
        connection.send(json.dumps(message).encode())
    except OSError:  # the launcher is gone; its child ends by itself (run_engine)
        pass


def _outcome(status: int) -> dict[str, int]:
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.waitstatus_to_exitcode(status)}


def run_engine(request: EngineRequest) -> None:
    """In the child: become the flow run's engine process, as ``python -m prefect.engine`` would."""
    import runpy

    os.setsid()
    for target, fd in enumerate(request.streams):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request.env)
    os.chdir(request.cwd)
    sys.path[0] = request.cwd  # what `python -m` puts first
    _die_with(request.launcher)
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()  # the run's own settings, read from its environment
    sys.argv = ["prefect.engine", *request.argv]
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


def _die_with(launcher: int) -> None:
    """End this child when its launcher ends (the worker kills the launcher to stop a run)."""
    try:
        launcher_fd = os.pidfd_open(launcher)
    except ProcessLookupError:
        os._exit(1)

    def watch() -> None:
        selector = selectors.DefaultSelector()
        selector.register(launcher_fd, selectors.EVENT_READ)
        selector.select()
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="agentic-warm-launcher-watch", daemon=True).start()


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [{os.getpid()}] {message}", flush=True)


if __name__ == "__main__":
    main()
