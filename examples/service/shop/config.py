"""What this version of the service is and how it behaves.

``ERROR_RATE`` (share of requests answered 500) and ``ADDED_LATENCY_MS`` exist so that a
regression can be injected on purpose, as a code change or through the environment variables
of the same names, to rehearse a canary rollback.
"""

import os

VERSION = "1.0.0"
ERROR_RATE = float(os.environ.get("ERROR_RATE", "0"))
ADDED_LATENCY_MS = float(os.environ.get("ADDED_LATENCY_MS", "0"))
CACHE_HOST = os.environ.get("CACHE_HOST", "cache")
CACHE_PORT = int(os.environ.get("CACHE_PORT", "6379"))
PORT = int(os.environ.get("PORT", "8000"))
