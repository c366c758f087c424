"""The HTTP service: ``/`` counts visits in the cache, ``/health`` and ``/metrics`` for operators."""

from __future__ import annotations

import json
import random
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from shop import config
from shop.cache import CacheError, RedisCache
from shop.metrics import Metrics


class Cache(Protocol):
    def ping(self) -> bool: ...
    def incr(self, key: str) -> int: ...


def make_handler(cache: Cache, metrics: Metrics, rng: random.Random | None = None) -> type[BaseHTTPRequestHandler]:
    chance = rng or random.Random()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/metrics":
                return self._send(200, metrics.render(config.VERSION), "text/plain; version=0.0.4")
            if self.path == "/health":
                try:
                    ok = cache.ping()
                except CacheError:
                    ok = False
                return self._send(200 if ok else 503, json.dumps({"ok": ok, "version": config.VERSION}))
            started = time.perf_counter()
            code, body = self._visit()
            # Counted before the reply: a client that reads /metrics right after sees its request.
            metrics.observe(code, time.perf_counter() - started)
            self._send(code, body)

        def _visit(self) -> tuple[int, str]:
            if config.ADDED_LATENCY_MS:
                time.sleep(config.ADDED_LATENCY_MS / 1000)
            if chance.random() < config.ERROR_RATE:
                return 500, json.dumps({"error": "injected failure"})
            try:
                hits = cache.incr("hits")
            except CacheError as exc:
                return 503, json.dumps({"error": str(exc)})
            return 200, json.dumps({"version": config.VERSION, "hits": hits})

        def _send(self, code: int, body: str, kind: str = "application/json") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # quiet: metrics say it all
            pass

    return Handler


def main() -> None:
    cache = RedisCache(config.CACHE_HOST, config.CACHE_PORT)
    server = ThreadingHTTPServer(("0.0.0.0", config.PORT), make_handler(cache, Metrics()))
    server.daemon_threads = True
    print(f"shop {config.VERSION} listening on :{config.PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
