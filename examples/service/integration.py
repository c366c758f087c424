"""Integration checks of a running service and its cache, run next to it on its private network.

Usage: python3 integration.py http://service:8000  (prints one JSON object; exit 1 if a check failed)
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def checks(base: str) -> dict[str, bool]:
    results = {}
    code, body = get(f"{base}/health")
    results["health answers 200 with the cache up"] = code == 200 and json.loads(body)["ok"]
    counts = []
    errors = 0
    for _ in range(20):
        code, body = get(f"{base}/")
        if code == 200:
            counts.append(json.loads(body)["hits"])
        else:
            errors += 1
    results["20 visits answer 200"] = errors == 0
    results["the visit counter in the cache increases"] = len(counts) == 20 and counts == sorted(set(counts))
    code, body = get(f"{base}/metrics")
    results["metrics count the visits"] = code == 200 and "http_request_duration_seconds_count" in body
    return results


def main() -> int:
    base = sys.argv[1].rstrip("/")
    deadline = time.monotonic() + 30
    while True:
        try:
            get(f"{base}/health")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    results = checks(base)
    print(json.dumps({"checks": results, "passed": sum(results.values()), "failed": len(results) - sum(results.values())}))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
