"""A real HTTP server on 127.0.0.1 that speaks GitHub's pull-request endpoints.

It implements what the ``change_request`` tool uses — list, create and
update pull requests of one repository — the way GitHub answers them: bearer
token or 401 "Bad credentials", 404 for another repository, 422 "Validation
Failed" when the head branch was never pushed (it looks in a real bare
repository) or a pull request for it is already open. Tests read what it
received and the pull requests it holds.
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


class FakeGitHub:
    def __init__(self, repository: str, token: str, remote: Path) -> None:
        self.repository = repository
        self.token = token
        self.remote = remote
        self.pulls: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeGitHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, request: Request, query: dict[str, list[str]]) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(request)
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return 401, {"message": "Bad credentials"}
            prefix = f"/repos/{self.repository}/pulls"
            if not request.path.startswith(prefix):
                return 404, {"message": "Not Found"}
            rest = request.path[len(prefix):].strip("/")
            if request.method == "GET" and not rest:
                return 200, [p for p in self.pulls if _matches(p, query)]
            if request.method == "POST" and not rest:
                return self._create(request.body or {})
            if request.method == "PATCH" and rest.isdigit():
                return self._update(int(rest), request.body or {})
            return 404, {"message": "Not Found"}

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        missing = [f for f in ("title", "head", "base") if not body.get(f)]
        if missing:
            return 422, _invalid(missing[0], "missing_field")
        head_sha = self._branch(body["head"])
        if head_sha is None:
            return 422, _invalid("head", "invalid")
        if self._branch(body["base"]) is None:
            return 422, _invalid("base", "invalid")
        owner = self.repository.split("/")[0]
        if any(p["state"] == "open" and p["head"]["ref"] == body["head"] for p in self.pulls):
            return 422, {"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "code": "custom",
                 "message": f"A pull request already exists for {owner}:{body['head']}."}]}
        number = len(self.pulls) + 1
        pull = {"number": number, "state": "open", "title": body["title"], "body": body.get("body"),
                "draft": bool(body.get("draft")),
                "html_url": f"https://github.example/{self.repository}/pull/{number}",
                "head": {"ref": body["head"], "sha": head_sha, "label": f"{owner}:{body['head']}"},
                "base": {"ref": body["base"]}}
        self.pulls.append(pull)
        return 201, pull

    def _update(self, number: int, body: dict[str, Any]) -> tuple[int, Any]:
        for pull in self.pulls:
            if pull["number"] == number:
                pull.update({k: body[k] for k in ("title", "body") if k in body})
                return 200, pull
        return 404, {"message": "Not Found"}

    def _branch(self, name: str) -> str | None:
        found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{name}"],
                               cwd=self.remote, capture_output=True, text=True, check=False)
        return found.stdout.strip() or None


def _matches(pull: dict[str, Any], query: dict[str, list[str]]) -> bool:
    wanted = {k: v[0] for k, v in query.items()}
    return (pull["state"] == wanted.get("state", "open")
            and ("head" not in wanted or pull["head"]["label"] == wanted["head"])
            and ("base" not in wanted or pull["base"]["ref"] == wanted["base"]))


def _invalid(field: str, code: str) -> dict[str, Any]:
    return {"message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "field": field, "code": code}]}


def _handler(github: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            request = Request(self.command, url.path, {k.lower(): v for k, v in self.headers.items()}, body)
            status, answer = github.answer(request, parse_qs(url.query))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
