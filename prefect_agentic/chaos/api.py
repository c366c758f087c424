"""``api_error`` and ``api_latency``: faults on the Prefect API requests of the run's process.

Prefect's clients (``PrefectHttpxAsyncClient`` and ``PrefectHttpxSyncClient``,
which every ``get_client()`` makes, the engine's own included) send each
request through ``_send_with_retry``: it retries 408, 429, 502 and 503 answers
and dropped connections, up to ``PREFECT_CLIENT_MAX_RETRIES`` times, waiting
``Retry-After`` or 2, 4, 8… s (with jitter) between tries. ``install`` puts a
wrapper around that method, once, the first time a run with API faults starts:
the wrapper hands the retry loop a ``send`` that, for a try the spec hits,
waits (``api_latency``) or answers with the fault's status without reaching
the API (``api_error``). So Prefect's own retry meets the injected answer as
it meets a real one, and the wrapper sees, when the loop ends, whether the
fault was *absorbed* (a later try got a real answer) or *reached the caller*
(a status Prefect does not retry, such as 500, or its tries ran out).

A fault is recorded (``chaos_fault``, with the route and the try) before it
acts, and its request's end as ``chaos_api_outcome``. Recording goes to the
audit log, which is not the Prefect API; an API request made while recording
(an artifact the record updates) is never faulted, nor is any request to the
events routes, which carry the ``prefect-agentic.chaos.*`` events.

The faults are active while ``active(spec, recorder)`` is: the window of the
run's steps (after the log's ``run_started``, before its ``run_finished``),
process-wide, since the engine's requests come from its own threads and event
loops. Before any run with API faults, nothing here is loaded or patched.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import anyio
import httpx
from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

from prefect_agentic.chaos.spec import ChaosSpec, Fault, FaultKind
from prefect_agentic.record.recorder import Recorder

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_recording: ContextVar[bool] = ContextVar("agentic_api_chaos_recording", default=False)
_active: ApiChaos | None = None
_install_lock = threading.Lock()
_installed = False


def route_of(url: httpx.URL) -> str:
    """The request's route: its path after ``/api/`` (the whole path, stripped of ``/``, when there is none)."""
    path = url.path
    at = path.find("/api/")
    return (path[at + 5:] if at >= 0 else path).strip("/")


class _Request:
    """One API request the spec aims at, across the tries of Prefect's retry loop."""

    def __init__(self, label: str, route: str) -> None:
        self.label, self.route = label, route
        self.tries = 0
        self.injected: list[tuple[int, Fault, httpx.Response]] = []


class ApiChaos:
    """The API faults of ``spec``, recorded to ``recorder``."""

    def __init__(self, spec: ChaosSpec, recorder: Recorder) -> None:
        self.spec, self.recorder = spec, recorder
        self.faults = [(i, f) for i, f in enumerate(spec.faults)
                       if f.kind in (FaultKind.api_error, FaultKind.api_latency)]
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def begin(self, request: httpx.Request) -> _Request | None:
        """The request's label (method, route with ids replaced, its number among same-labelled ones),
        or None when no fault can select it."""
        route = route_of(request.url)
        if route.startswith("events") or not any(_route_matches(f, route) for _, f in self.faults):
            return None
        key = f"{request.method} {_UUID.sub(':id', route)}"
        with self._lock:
            self._seen[key] += 1
            number = self._seen[key]
        return _Request(f"{key}#{number}", route)

    def plan_try(self, req: _Request) -> tuple[tuple[int, Fault] | None, tuple[int, Fault] | None]:
        """For the request's next try: the latency and the error that hit it (first of each kind)."""
        req.tries += 1
        latency = error = None
        for index, fault in self.faults:
            if not _route_matches(fault, req.route) or (fault.attempts is not None and req.tries not in fault.attempts):
                continue
            if not self.spec.hits(index, req.label, req.tries):
                continue
            if fault.kind is FaultKind.api_latency and latency is None:
                latency = (index, fault)
            elif fault.kind is FaultKind.api_error and error is None:
                error = (index, fault)
        return latency, error

    def answer(self, req: _Request, index: int, fault: Fault, request: httpx.Request) -> httpx.Response:
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        response = httpx.Response(fault.status, request=request, headers=headers,
                                  json={"detail": f"chaos fault api_error: injected {fault.status} "
                                                  f"(fault {index}, seed {self.spec.seed})"})
        req.injected.append((index, fault, response))
        return response

    def record_fault(self, req: _Request, index: int, fault: Fault) -> None:
        extra = {"status": fault.status} if fault.kind is FaultKind.api_error else {"seconds": fault.seconds}
        self._record("chaos_fault", {"fault": index, "kind": fault.kind.value, "request": req.label,
                                     "route": req.route, "attempt": req.tries, "seed": self.spec.seed, **extra})

    def finish(self, req: _Request, response: httpx.Response | None, error: BaseException | None) -> None:
        """After Prefect's retry loop: were the injected errors absorbed by its retries?"""
        if not req.injected:
            return
        reached = response is not None and any(response is injected for _, _, injected in req.injected)
        outcome = "reached_caller" if reached or error is not None else "absorbed"
        final: dict[str, Any] = ({"status": response.status_code} if response is not None
                                 else {"error": type(error).__name__})
        self._record("chaos_api_outcome", {"request": req.label, "route": req.route, "tries": req.tries,
                                           "injected": len(req.injected), "outcome": outcome, **final})

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        token = _recording.set(True)  # an API request the record makes (an artifact) is not faulted
        try:
            self.recorder.record(kind, data)
        finally:
            _recording.reset(token)


def _route_matches(fault: Fault, route: str) -> bool:
    return fnmatch.fnmatchcase(route, fault.routes)


@contextmanager
def active(spec: ChaosSpec, recorder: Recorder) -> Iterator[ApiChaos]:
    """The spec's API faults hit the process's Prefect API requests while this lasts."""
    global _active
    install()
    chaos, previous = ApiChaos(spec, recorder), _active
    _active = chaos
    try:
        yield chaos
    finally:
        _active = previous


def _aimed(request: httpx.Request) -> tuple[ApiChaos, _Request] | None:
    chaos = _active
    if chaos is None or _recording.get():
        return None
    req = chaos.begin(request)
    return None if req is None else (chaos, req)


def install() -> None:
    """Wrap the retry loops of Prefect's async and sync clients (once; no-op afterwards)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        async_loop = PrefectHttpxAsyncClient._send_with_retry
        sync_loop = PrefectHttpxSyncClient._send_with_retry

        async def async_send_with_retry(self: Any, request: httpx.Request, send: Any, *args: Any,
                                        **kwargs: Any) -> Any:
            aimed = _aimed(request)
            if aimed is None:
                return await async_loop(self, request, send, *args, **kwargs)
            chaos, req = aimed

            async def faulty(request: httpx.Request, *a: Any, **k: Any) -> httpx.Response:
                latency, error = chaos.plan_try(req)
                if latency is not None:
                    chaos.record_fault(req, *latency)
                    await anyio.sleep(latency[1].seconds)
                if error is not None:
                    chaos.record_fault(req, *error)
                    return chaos.answer(req, *error, request)
                return await send(request, *a, **k)

            response = None
            try:
                response = await async_loop(self, request, faulty, *args, **kwargs)
            except BaseException as exc:
                chaos.finish(req, None, exc)
                raise
            chaos.finish(req, response, None)
            return response

        def sync_send_with_retry(self: Any, request: httpx.Request, send: Any, *args: Any, **kwargs: Any) -> Any:
            aimed = _aimed(request)
            if aimed is None:
                return sync_loop(self, request, send, *args, **kwargs)
            chaos, req = aimed

            def faulty(request: httpx.Request, *a: Any, **k: Any) -> httpx.Response:
                latency, error = chaos.plan_try(req)
                if latency is not None:
                    chaos.record_fault(req, *latency)
                    time.sleep(latency[1].seconds)
                if error is not None:
                    chaos.record_fault(req, *error)
                    return chaos.answer(req, *error, request)
                return send(request, *a, **k)

            try:
                response = sync_loop(self, request, faulty, *args, **kwargs)
            except BaseException as exc:
                chaos.finish(req, None, exc)
                raise
            chaos.finish(req, response, None)
            return response

        PrefectHttpxAsyncClient._send_with_retry = async_send_with_retry  # type: ignore[method-assign]
        PrefectHttpxSyncClient._send_with_retry = sync_send_with_retry  # type: ignore[method-assign]
        _installed = True
