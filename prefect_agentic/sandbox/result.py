"""The result of one sandboxed command, and the capped buffer that captures output."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    """What came of running a command in a container."""

    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    oom_killed: bool = False
    pids_limit_hit: bool = False
    cpu_seconds: float | None = None
    output_truncated: bool = False
    #: The container itself stopped while the command ran (its exit code), not just the command.
    sandbox_exit_code: int | None = None
    #: The sandbox was killed under the command from outside (why); the command's outcome is unknown.
    sandbox_lost: str | None = None

    def combined_tail(self, limit: int = 4000) -> str:
        """The end of stdout and stderr, for logs and failure reasons."""
        text = self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr
        return text if len(text) <= limit else "…" + text[-limit:]


class CappedBuffer:
    """Keeps the head and the tail of a stream, dropping the middle past ``limit`` bytes.

    The head shows how a command started, the tail how it ended (a test
    summary, a traceback); a gigabyte of output costs no more than ``limit``.
    """

    def __init__(self, limit: int) -> None:
        self._head_limit = limit // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    @property
    def truncated(self) -> bool:
        return self.total > self._head_limit + self._tail_limit

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > 2 * self._tail_limit:
                del self._tail[: len(self._tail) - self._tail_limit]

    def text(self) -> str:
        tail = self._tail[-self._tail_limit :] if self._tail_limit else b""
        dropped = self.total - len(self._head) - len(tail)
        if dropped <= 0:
            return (bytes(self._head) + bytes(tail)).decode("utf-8", "replace")
        marker = f"\n… [{dropped} bytes of output omitted] …\n".encode()
        return (bytes(self._head) + marker + bytes(tail)).decode("utf-8", "replace")
