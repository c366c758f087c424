"""``docker_unavailable``: the Docker engine refuses a step's calls for a while, the engine itself untouched.

The engine is shared (other runs, other users), so a chaos run never stops
it. Instead the sandbox's Docker client gets, once, a transport adapter in
front of its own: while the calling thread's ``engine_outage`` deadline lies
ahead, a request fails exactly as it does when nothing listens on the engine
socket (``requests.exceptions.ConnectionError`` around urllib3's
``ProtocolError('Connection aborted.', ConnectionRefusedError(111, ...))``,
which is what the SDK raises then); otherwise it goes through untouched.
Only the step's own thread sees the outage (a context variable), so the other
steps of the run and the run's own clean-up talk to the engine as usual.
"""

from __future__ import annotations

import threading
import time
from contextvars import ContextVar
from typing import Any

import docker
import requests
from requests.adapters import BaseAdapter
from urllib3.exceptions import ProtocolError

engine_outage: ContextVar[float | None] = ContextVar("agentic_engine_outage", default=None)
"""``time.monotonic()`` instant until which this thread's Docker calls are refused."""

_install_lock = threading.Lock()


class RefusingAdapter(BaseAdapter):
    """The client's own adapter, refusing requests during this thread's outage."""

    def __init__(self, inner: BaseAdapter) -> None:
        super().__init__()
        self.inner = inner

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        until = engine_outage.get()
        if until is not None and time.monotonic() < until:
            refused = ProtocolError("Connection aborted.", ConnectionRefusedError(111, "Connection refused"))
            raise requests.exceptions.ConnectionError(refused, request=request)
        return self.inner.send(request, **kwargs)

    def close(self) -> None:
        self.inner.close()


def install(client: docker.DockerClient) -> None:
    """Put a ``RefusingAdapter`` in front of each of ``client``'s adapters (once; no-op afterwards)."""
    api = client.api
    with _install_lock:
        for prefix, adapter in list(api.adapters.items()):
            if not isinstance(adapter, RefusingAdapter):
                api.adapters[prefix] = RefusingAdapter(adapter)  # same key: the mount order is kept
