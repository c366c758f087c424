"""The command a warm worker runs for a flow run (``python -m prefect_agentic.warm.launch``).

Stdlib only, so that it starts in milliseconds. It asks the warm process for a
forked engine, passing its standard streams (the worker reads them) and its
environment (the flow run's), then stands in for that child: signals it gets
go to the child, and it exits as the child did. Without a warm process it
starts one for later runs and becomes the engine itself, the cold way.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

PER_RUN_PREFIX = "PREFECT__"
"""Environment variables Prefect sets per flow run; every other variable selects the warm process."""

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
MAX_MESSAGE = 64 * 1024


def runtime_dir() -> Path:
    """A directory only this user can enter, for the warm processes' sockets and logs."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = Path(base) / f"prefect-agentic-warm-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_uid != os.getuid() or path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} must belong to uid {os.getuid()} with mode 0700")
    return path


def socket_path(owner: int, environment: dict[str, str]) -> Path:
    """The warm process of worker ``owner`` for this environment and this install of Prefect and the pack.

    A flow run with other settings, or a pack or Prefect installed since, gets
    a warm process of its own: a child never runs with another run's settings
    or with code older than what a cold start would import.
    """
    import prefect_agentic

    shared = sorted((k, v) for k, v in environment.items() if not k.startswith(PER_RUN_PREFIX))
    installs = [(m.__file__, os.stat(m.__file__).st_mtime_ns) for m in (prefect_agentic,)]
    installs.append(_prefect_install())
    key = hashlib.sha256(json.dumps([sys.executable, shared, installs]).encode()).hexdigest()[:16]
    return runtime_dir() / f"{owner}-{key}.sock"


def _prefect_install() -> tuple[str, int]:
    from importlib.util import find_spec

    spec = find_spec("prefect")
    origin = spec.origin if spec and spec.origin else ""
    return origin, os.stat(origin).st_mtime_ns if origin else 0


def main() -> None:
    environment = dict(os.environ)
    path = socket_path(os.getppid(), environment)
    connection = _connect(path)
    if connection is None:
        start_warm_process(path, os.getppid(), environment)
        _run_cold()
    _stand_in(connection, environment)


def _connect(path: Path) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.connect(str(path))
    except OSError:
        connection.close()
        return None
    return connection


def start_warm_process(path: Path, owner: int, environment: dict[str, str]) -> None:
    """Start the warm process for ``path`` in the background; it lives as long as worker ``owner``."""
    shared = {k: v for k, v in environment.items() if not k.startswith(PER_RUN_PREFIX)}
    with open(path.with_suffix(".log"), "ab") as log:
        subprocess.Popen([sys.executable, "-m", "prefect_agentic.warm.server", str(path), str(owner)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=shared, cwd="/",
                         start_new_session=True, close_fds=True)


def _run_cold() -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *sys.argv[1:]])


def _stand_in(connection: socket.socket, environment: dict[str, str]) -> None:
    request = {"env": environment, "cwd": os.getcwd(), "argv": sys.argv[1:], "launcher": os.getpid()}
    try:
        socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
        child = int(json.loads(connection.recv(MAX_MESSAGE))["pid"])
    except (OSError, ValueError, KeyError):  # the warm process went away: this run goes the cold way
        connection.close()
        _run_cold()

    def forward(signum: int, _frame: FrameType | None) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    message = b""
    while not message:
        try:
            message = connection.recv(MAX_MESSAGE)
        except InterruptedError:
            continue
        if not message:  # the warm process died; the child dies with its launcher
            sys.exit(1)
    outcome = json.loads(message)
    if "signal" in outcome:  # end as the child did, so the worker reports the same
        signal.signal(outcome["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), outcome["signal"])
    sys.exit(int(outcome.get("exit", 1)))


if __name__ == "__main__":
    main()
