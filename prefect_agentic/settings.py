"""Settings of prefect-agentic itself (environment variables with the AGENTIC_ prefix)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings


def agentic_home() -> Path:
    """Where run workspaces live: ``$AGENTIC_HOME``, default ``~/.prefect-agentic``."""
    return Path(os.environ.get("AGENTIC_HOME", Path.home() / ".prefect-agentic")).expanduser()


def snapshot_remote_setting() -> str | None:
    """``$AGENTIC_SNAPSHOT_REMOTE``: the bare repository steps on task workers exchange snapshots through."""
    return os.environ.get("AGENTIC_SNAPSHOT_REMOTE") or None


def uses_embedded_api() -> bool:
    """True when no Prefect server is configured: flows run on Prefect's ephemeral API."""
    return not PREFECT_API_URL.value()


@contextmanager
def embedded_run_settings() -> Iterator[None]:
    """Prefect settings for a flow run started here, on the embedded API.

    Flow-run heartbeats exist so that a server can tell a crashed run from a
    slow one. The ephemeral API lives and dies with this process, so nobody is
    there to watch them, yet Prefect joins the heartbeat thread at the end of
    every flow run, which costs up to a second. They are turned off on the
    embedded API only; against a server (``PREFECT_API_URL``) nothing changes.
    """
    if not uses_embedded_api():
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
