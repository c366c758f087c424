"""Request counters and a latency histogram in the Prometheus text exposition format."""

from __future__ import annotations

import threading
from collections import Counter

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, code: int, seconds: float) -> None:
        with self._lock:
            self.requests[str(code)] += 1
            self.count += 1
            self.total += seconds
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1

    def render(self, version: str) -> str:
        with self._lock:
            lines = ["# HELP http_requests_total Requests served, by status code.",
                     "# TYPE http_requests_total counter"]
            lines += [f'http_requests_total{{code="{code}"}} {n}' for code, n in sorted(self.requests.items())]
            lines += ["# HELP http_request_duration_seconds Time to answer a request.",
                      "# TYPE http_request_duration_seconds histogram"]
            lines += [f'http_request_duration_seconds_bucket{{le="{b}"}} {n}' for b, n in zip(BUCKETS, self.buckets)]
            lines += [f'http_request_duration_seconds_bucket{{le="+Inf"}} {self.count}',
                      f"http_request_duration_seconds_sum {self.total:.6f}",
                      f"http_request_duration_seconds_count {self.count}",
                      "# TYPE service_info gauge", f'service_info{{version="{version}"}} 1']
        return "\n".join(lines) + "\n"
