"""A bounded traffic generator: RATE requests per second to TARGET, at most TOTAL requests.

Counts what it got back and serves the counts at :9100/metrics (Prometheus text), so that the
requests that failed during a rollout can be read afterwards.
Usage: python3 loadgen.py TARGET [RATE] [TOTAL]
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNTS: Counter[str] = Counter()
LOCK = threading.Lock()


def hit(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            outcome = str(answer.status)
    except urllib.error.HTTPError as exc:
        outcome = str(exc.code)
    except OSError:
        outcome = "error"
    with LOCK:
        COUNTS[outcome] += 1


class Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        with LOCK:
            body = "".join(f'loadgen_requests_total{{outcome="{k}"}} {v}\n' for k, v in sorted(COUNTS.items()))
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    target = sys.argv[1]
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 20
    total = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
    threading.Thread(target=ThreadingHTTPServer(("0.0.0.0", 9100), Metrics).serve_forever, daemon=True).start()
    start = time.monotonic()
    for n in range(total):
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
        threading.Thread(target=hit, args=(target,), daemon=True).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
