"""A real HTTP server on 127.0.0.1 that implements POST /v1/chat/completions.

It answers from a script, one entry per request, so a test decides exactly
what the "model" says: a plan, broken JSON, a schema violation, a 429, a 500,
or nothing in time. It checks requests the way a real endpoint would (path,
bearer key, model and messages) and reports token usage computed from the
text, so usage and pricing are checked end to end.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "sk-test-scripted"


@dataclass
class Scripted:
    """One scripted answer: a chat completion with ``content``, or an HTTP error ``status``."""

    content: str = ""
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None
    finish_reason: str = "stop"


@dataclass
class Seen:
    """A request the server received, and the usage it reported for it."""

    body: dict[str, Any]
    authorization: str | None
    usage: dict[str, int] | None = None


class ScriptedLLM:
    def __init__(self, api_key: str | None = API_KEY) -> None:
        self.api_key = api_key
        self.script: deque[Scripted] = deque()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reply(self, content: str | dict[str, Any], **kwargs: Any) -> ScriptedLLM:
        text = content if isinstance(content, str) else json.dumps(content)
        self.script.append(Scripted(content=text, **kwargs))
        return self

    def fail(self, status: int, message: str = "scripted failure", **kwargs: Any) -> ScriptedLLM:
        body = json.dumps({"error": {"message": message, "type": "server_error"}})
        self.script.append(Scripted(status=status, raw_body=body, **kwargs))
        return self

    def next_answer(self, body: dict[str, Any], authorization: str | None) -> tuple[int, dict[str, str], str, float]:
        with self._lock:
            seen = Seen(body=body, authorization=authorization)
            self.seen.append(seen)
            if self.api_key and authorization != f"Bearer {self.api_key}":
                return 401, {}, _error("invalid api key"), 0.0
            if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
                return 400, {}, _error("model and messages are required"), 0.0
            if not self.script:
                return 400, {}, _error(f"scripted server has no answer left for request {len(self.seen)}"), 0.0
            entry = self.script.popleft()
        if entry.raw_body is not None:
            return entry.status, entry.headers, entry.raw_body, entry.delay
        usage = {
            "prompt_tokens": sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4,
            "completion_tokens": max(1, len(entry.content) // 4),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        seen.usage = usage
        completion = {
            "id": f"chatcmpl-{len(self.seen)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": entry.finish_reason,
                         "message": {"role": "assistant", "content": entry.content}}],
            "usage": usage,
        }
        return entry.status, entry.headers, json.dumps(completion), entry.delay

    def user_messages(self, request: int) -> list[str]:
        return [m["content"] for m in self.seen[request].body["messages"] if m["role"] == "user"]


def _error(message: str) -> str:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}})


def _handler(server: ScriptedLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path != "/v1/chat/completions":
                self._send(404, {}, _error(f"no route {self.path}"))
                return
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self._send(400, {}, _error("request body is not JSON"))
                return
            status, headers, text, delay = server.next_answer(body, self.headers.get("Authorization"))
            time.sleep(delay)
            self._send(status, headers, text)

        def _send(self, status: int, headers: dict[str, str], text: str) -> None:
            payload = text.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class ListRecorder:
    """A Recorder that keeps every record in memory, for assertions."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any], str | None]] = []

    def record(self, kind: str, data: Any, *, step_id: str | None = None) -> None:
        self.records.append((kind, dict(data), step_id))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data, _ in self.records if k == kind]
