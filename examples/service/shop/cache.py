"""A minimal Redis client (RESP over a socket): the few commands the service needs."""

from __future__ import annotations

import socket
import threading


class CacheError(Exception):
    """The cache did not answer or answered with an error."""


class RedisCache:
    def __init__(self, host: str, port: int, timeout: float = 1.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._local = threading.local()

    def ping(self) -> bool:
        return self._call("PING") == "PONG"

    def incr(self, key: str) -> int:
        return int(self._call("INCR", key))

    def _call(self, *parts: str) -> str:
        payload = f"*{len(parts)}\r\n" + "".join(f"${len(p.encode())}\r\n{p}\r\n" for p in parts)
        try:
            conn = self._connection()
            conn.sendall(payload.encode())
            line = conn.makefile("rb").readline().decode().rstrip("\r\n")
        except OSError as exc:
            self._local.conn = None
            raise CacheError(f"cache {self.host}:{self.port}: {exc}") from None
        if not line or line[0] == "-":
            self._local.conn = None
            raise CacheError(f"cache {self.host}:{self.port} answered {line!r}")
        return line[1:]

    def _connection(self) -> socket.socket:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._local.conn = conn
        return conn
