"""Named Prefect global concurrency limits, created on demand.

Why Prefect's limits and not a local semaphore: workers on several machines
share one Prefect server, and only a limit held there bounds all of them
together. Slots are leased: a holder killed with SIGKILL stops renewing its
lease, and the server frees its slots when the lease runs out, so a dead
worker never keeps a slot for good.

A limit the pack uses is created the first time it is needed, with the size
its settings give; an existing limit keeps the size it has (an operator may
have changed it with ``prefect gcl update``).

Limits apply when the process talks to a Prefect server (``PREFECT_API_URL``).
On Prefect's ephemeral API (a lone ``agentic run``) there is nobody to share
them with, and starting that API only to count slots would cost more than
the run.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

import certifi
import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import (
    PREFECT_API_ENABLE_HTTP2,
    PREFECT_API_SSL_CERT_FILE,
    PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
    PREFECT_API_URL,
)

from prefect_agentic.errors import ConcurrencyLimitError
from prefect_agentic.settings import uses_embedded_api

_known: set[tuple[str | None, str]] = set()
_known_lock = threading.Lock()

LIMIT_NAMES_TTL_SECONDS = 5.0
"""How long one read of the API's limit names answers (as Prefect's client keeps its own)."""
_LIMIT_PAGE = 200
_limit_names: dict[str | None, tuple[float, frozenset[str]]] = {}


def limit_names() -> frozenset[str]:
    """The names of the API's global concurrency limits: one read, kept ``LIMIT_NAMES_TTL_SECONDS``.

    One read answers both questions a step asks before it runs (which of its
    tags have a limit, and whether the sandbox limit exists yet): a deployed
    flow run is a fresh process, so each question asked on its own was one
    more API call per run.
    """
    url, now = PREFECT_API_URL.value(), time.monotonic()
    with _known_lock:
        cached = _limit_names.get(url)
        if cached is not None and cached[0] > now:
            return cached[1]
    names: set[str] = set()
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_global_concurrency_limits(limit=_LIMIT_PAGE, offset=offset)
            names.update(limit.name for limit in page)
            if len(page) < _LIMIT_PAGE:
                break
            offset += _LIMIT_PAGE
    with _known_lock:
        _limit_names[url] = (now + LIMIT_NAMES_TTL_SECONDS, frozenset(names))
    return frozenset(names)


def forget_limit_names() -> None:
    """Read the limit names again at the next question (a limit was just created or deleted elsewhere)."""
    with _known_lock:
        _limit_names.clear()


def ensure_limit(name: str, limit: int, slot_decay_per_second: float | None = None) -> None:
    """Create the global concurrency limit ``name`` unless it exists (once per process and API)."""
    key = (PREFECT_API_URL.value(), name)
    with _known_lock:
        if key in _known:
            return
    if name not in limit_names():
        with get_client(sync_client=True) as client:
            try:
                decay = {} if slot_decay_per_second is None else {"slot_decay_per_second": slot_decay_per_second}
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit, **decay))
            except ObjectAlreadyExists:  # another worker made it first
                pass
    with _known_lock:
        _known.add(key)


def forget_limit(name: str) -> None:
    """Delete the limit ``name`` (a per-run limit whose run is over); missing is fine."""
    with _known_lock:
        _known.discard((PREFECT_API_URL.value(), name))
        _limit_names.clear()
    with get_client(sync_client=True) as client:
        try:
            client.delete_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            pass


@contextmanager
def holding(limits: dict[str, int], lease_seconds: float) -> Iterator[None]:
    """Hold one slot of each limit (name → size if it must be created) while the block runs.

    Waits for free slots. Two API calls a holding (acquire, release): the lease
    is renewed only when the block outlives three quarters of it, so a short
    step pays no renewal, and nothing runs through Prefect's batching service
    (which costs more than a whole step in warm mode, see bench/step_overhead.py).
    """
    if not limits or uses_embedded_api():
        yield
        return
    names = sorted(limits)
    try:
        for name, size in limits.items():
            ensure_limit(name, size)
        client = _client()
        lease_id = _acquire(client, names, lease_seconds)
    except (PrefectHTTPStatusError, httpx.HTTPError) as exc:
        raise ConcurrencyLimitError(
            f"cannot take a slot of concurrency limit(s) {', '.join(names)} on {PREFECT_API_URL.value()}: "
            f"{exc}") from None
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(lease_id, lease_seconds, stop),
                               name="agentic-slot-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        client.release_concurrency_slots_with_lease(lease_id)


def _acquire(client: SyncPrefectClient, names: list[str], lease_seconds: float) -> UUID:
    while True:
        try:
            response = client.increment_concurrency_slots_with_lease(
                names=names, slots=1, mode="concurrency", lease_duration=lease_seconds)
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 423:  # 423 Locked: no free slot yet
                raise
            time.sleep(float(exc.response.headers.get("Retry-After", 1)))
            continue
        return UUID(response.json()["lease_id"])


def _renew(lease_id: UUID, lease_seconds: float, stop: threading.Event) -> None:
    while not stop.wait(lease_seconds * 0.75):
        try:
            _client().renew_concurrency_lease(lease_id=lease_id, lease_duration=lease_seconds)
        except Exception as exc:  # noqa: BLE001 - the holder goes on; the server may reclaim the slot
            logging.getLogger("prefect_agentic.concurrency").warning(
                "could not renew concurrency lease %s: %s", lease_id, exc)


class BusyRetryTransport(httpx.BaseTransport):
    """Sends a request again soon when the server answers 503 (busy), before the client sees it.

    Why: on a Prefect server on SQLite, taking a slot reads the limits, then
    writes them, in one deferred transaction; when another writer (the flow engine's task-run
    states, logs, events) commits in between, SQLite refuses the write at once
    (SQLITE_BUSY, no busy wait) and the server answers 503. Prefect's client
    retries a 503 only after 2 s (2**1, with jitter), which cost ~1.6 s a step
    with a container per step. The same request sent again some milliseconds
    later goes through (bench/slot_acquire.py). After ``tries`` busy answers
    the 503 goes to the client, whose own, slower retries then apply.
    """

    def __init__(self, inner: httpx.BaseTransport, tries: int = 8, first_wait: float = 0.02,
                 max_wait: float = 0.5) -> None:
        self.inner, self.tries, self.first_wait, self.max_wait = inner, tries, first_wait, max_wait

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        wait = self.first_wait
        for _ in range(self.tries - 1):
            response = self.inner.handle_request(request)
            if response.status_code != httpx.codes.SERVICE_UNAVAILABLE:
                return response
            response.close()
            time.sleep(wait * random.uniform(1.0, 1.5))  # jitter: holders that collided spread out
            wait = min(wait * 2, self.max_wait)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


_clients: dict[str | None, SyncPrefectClient] = {}


def _client() -> SyncPrefectClient:
    """One open API client per process and API URL for the slot calls (httpx clients are
    thread-safe), its busy answers retried soon (``BusyRetryTransport``)."""
    url = PREFECT_API_URL.value()
    with _known_lock:
        client = _clients.get(url)
        if client is None:
            verify = _tls_context(url)
            transport = BusyRetryTransport(httpx.HTTPTransport(
                verify=verify, http2=PREFECT_API_ENABLE_HTTP2.value(), retries=3))
            client = _clients[url] = get_client(sync_client=True,
                                                httpx_settings={"transport": transport, "verify": verify})
            client.__enter__()
        return client


def _tls_context(url: str | None) -> ssl.SSLContext:
    """The TLS checks Prefect's own client makes (a transport of ours must make them itself).

    For a plain-HTTP API no TLS is spoken, and loading the CA bundle would cost
    ~20 ms of CPU in every flow-run process: the context then trusts no
    certificate at all, so it could only refuse a TLS peer, never accept one.
    """
    if url is not None and url.startswith("http://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value():
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())


def rate_limit_name(kind: str, name: str) -> str:
    """A limit name from a kind and a free-form name (block name, model)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower())
    return f"agentic-{kind}-{safe}"[:120]


def wait_for_rate(name: str, per_minute: float) -> None:
    """Block until the rate limit ``name`` (``per_minute`` calls) lets one more call through.

    The limit is created on demand as a Prefect rate limit: a burst of
    ``ceil(per_minute / 60)`` slots that decay at ``per_minute / 60`` a second.
    """
    if uses_embedded_api():
        return
    ensure_limit(name, max(1, math.ceil(per_minute / 60)), slot_decay_per_second=per_minute / 60)
    rate_limit(name, occupy=1, strict=True)
