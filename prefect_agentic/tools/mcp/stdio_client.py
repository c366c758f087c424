"""A stdio MCP client that runs INSIDE the sandbox container (Python 3 standard library only).

The sandbox image has neither the ``mcp`` package nor a network, so the host
copies this script into the step's report directory and runs it there:

    python3 stdio_client.py REQUEST_JSON -- SERVER_COMMAND...

It starts the server, speaks MCP's stdio transport to it (newline-delimited
JSON-RPC 2.0: ``initialize``, ``notifications/initialized``, then
``tools/list`` or ``tools/call``) and prints one line, ``RESULT_PREFIX``
followed by ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ...}``.
Every read from the server is capped and bounded in time, so a server that
floods, babbles or never answers ends the call with an error. The host does not
trust this line either: the server shares the container and could forge it.
"""

import json
import queue
import subprocess
import sys
import threading
import time

RESULT_PREFIX = "AGENTIC-MCP-RESULT "
PROTOCOL_VERSION = "2025-06-18"
STDERR_TAIL = 2000
MAX_SKIPPED_MESSAGES = 1000
MAX_PAGES = 20


class CallFailed(Exception):
    pass


def main(argv):
    if len(argv) < 4 or argv[2] != "--":
        raise SystemExit("usage: stdio_client.py REQUEST_JSON -- SERVER_COMMAND...")
    request = json.loads(argv[1])
    deadline = time.monotonic() + float(request["timeout"])
    try:
        server = subprocess.Popen(argv[3:], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
    except OSError as exc:
        return finish({"ok": False, "error": f"cannot start the server: {exc}"})
    session = Session(server, int(request["max_message_bytes"]), deadline)
    try:
        session.initialize()
        if request["op"] == "list":
            result = session.list_tools()
        else:
            result = session.request("tools/call", {"name": request["tool"],
                                                    "arguments": request["arguments"]})
        return finish({"ok": True, "result": result})
    except CallFailed as exc:
        tail = session.stderr_tail()
        return finish({"ok": False, "error": str(exc) + (f" (server stderr: {tail})" if tail else "")})
    finally:
        session.close()


def finish(outcome):
    sys.stdout.write(RESULT_PREFIX + json.dumps(outcome) + "\n")
    sys.stdout.flush()
    return 0


class Session:
    def __init__(self, server, max_message_bytes, deadline):
        self.server = server
        self.max_message_bytes = max_message_bytes
        self.deadline = deadline
        self.messages = queue.Queue()
        self.next_id = 1
        self.stderr = bytearray()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.stderr_reader.start()

    def _read_stdout(self):
        stream = self.server.stdout
        while True:
            line = stream.readline(self.max_message_bytes + 1)
            if not line:
                self.messages.put(CallFailed("the server closed its output"))
                return
            if len(line) > self.max_message_bytes and not line.endswith(b"\n"):
                self.messages.put(CallFailed(
                    f"the server sent a message over {self.max_message_bytes} bytes"))
                return
            if not line.strip():
                continue
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                self.messages.put(CallFailed(f"the server sent a line that is not JSON: {line[:200]!r}"))
                return

    def _read_stderr(self):
        while True:
            chunk = self.server.stderr.read(4096)
            if not chunk:
                return
            self.stderr += chunk
            del self.stderr[:-STDERR_TAIL]

    def stderr_tail(self):
        """What the server last wrote to stderr (waiting a moment for a server that just exited)."""
        try:
            self.server.wait(timeout=1)
            self.stderr_reader.join(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        return self.stderr.decode("utf-8", "replace").strip()

    def send(self, message):
        try:
            self.server.stdin.write(json.dumps(message).encode() + b"\n")
            self.server.stdin.flush()
        except OSError as exc:
            raise CallFailed(f"cannot write to the server: {exc}") from None

    def request(self, method, params):
        request_id = self.next_id
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        for _ in range(MAX_SKIPPED_MESSAGES):
            message = self._next(method)
            if not isinstance(message, dict):
                raise CallFailed(f"the server answered {method} with something not a JSON object")
            if "method" in message:
                self._answer_server(message)
                continue
            if message.get("id") != request_id:
                continue
            if "error" in message:
                error = message["error"]
                text = error.get("message") if isinstance(error, dict) else error
                raise CallFailed(f"the server refused {method}: {str(text)[:2000]}")
            return message.get("result")
        raise CallFailed(f"the server sent {MAX_SKIPPED_MESSAGES} messages without answering {method}")

    def _next(self, method):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CallFailed(f"the server did not answer {method} in time")
        try:
            message = self.messages.get(timeout=left)
        except queue.Empty:
            raise CallFailed(f"the server did not answer {method} in time") from None
        if isinstance(message, CallFailed):
            raise message
        return message

    def _answer_server(self, message):
        """Requests from the server (ping, sampling...): ping is answered, the rest refused."""
        if "id" not in message:
            return
        if message.get("method") == "ping":
            self.send({"jsonrpc": "2.0", "id": message["id"], "result": {}})
        else:
            self.send({"jsonrpc": "2.0", "id": message["id"],
                       "error": {"code": -32601, "message": "not supported by this client"}})

    def initialize(self):
        self.request("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                                    "clientInfo": {"name": "prefect-agentic", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def list_tools(self):
        tools, cursor = [], None
        for _ in range(MAX_PAGES):
            page = self.request("tools/list", {"cursor": cursor} if cursor else {})
            if not isinstance(page, dict) or not isinstance(page.get("tools"), list):
                raise CallFailed("the server's tools/list answer has no list of tools")
            tools += page["tools"]
            cursor = page.get("nextCursor")
            if not cursor:
                break
        return {"tools": tools}

    def close(self):
        for stream in (self.server.stdin,):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.server.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.server.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
