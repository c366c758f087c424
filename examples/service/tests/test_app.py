"""Unit tests of the service with an in-memory cache (no network)."""

import json
import random
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

from shop import config
from shop.app import make_handler
from shop.cache import CacheError
from shop.metrics import Metrics


class MemoryCache:
    def __init__(self, up: bool = True) -> None:
        self.up, self.values = up, {}

    def ping(self) -> bool:
        if not self.up:
            raise CacheError("down")
        return True

    def incr(self, key: str) -> int:
        if not self.up:
            raise CacheError("down")
        self.values[key] = self.values.get(key, 0) + 1
        return self.values[key]


@pytest.fixture
def serve():
    servers = []

    def start(cache):
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(cache, Metrics(), random.Random(1)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_visits_count_in_the_cache(serve):
    base = serve(MemoryCache())
    assert [json.loads(fetch(base + "/")[1])["hits"] for _ in range(3)] == [1, 2, 3]


def test_health_follows_the_cache(serve):
    assert fetch(serve(MemoryCache()) + "/health")[0] == 200
    assert fetch(serve(MemoryCache(up=False)) + "/health")[0] == 503


def test_metrics_are_prometheus_text(serve):
    base = serve(MemoryCache())
    fetch(base + "/")
    code, text = fetch(base + "/metrics")
    assert code == 200
    assert 'http_requests_total{code="200"} 1' in text
    assert "http_request_duration_seconds_count 1" in text


def test_the_injected_error_rate_answers_500(serve, monkeypatch):
    monkeypatch.setattr(config, "ERROR_RATE", 1.0)
    assert fetch(serve(MemoryCache()) + "/")[0] == 500
