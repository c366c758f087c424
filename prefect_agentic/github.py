"""Pull requests through GitHub's REST API (over httpx).

Opening is idempotent: an open pull request for the same head and base is
updated (title and body) instead of failing with GitHub's "already exists",
so a retried or resumed step ends with one pull request. Errors say what
GitHub answered and what to check, never the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from prefect_agentic.errors import ToolError

API_VERSION = "2022-11-28"


class GitHubError(ToolError):
    """GitHub refused a request; the message quotes its answer."""


class GitHubUnavailableError(GitHubError):
    """GitHub could not be reached or failed (5xx); another attempt may work."""

    retryable = True


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    created: bool


class GitHubClient:
    """Pull requests of one repository (``owner/name``), with a token."""

    def __init__(self, api_url: str, repository: str, token: str, timeout: float = 30.0) -> None:
        self.repository = repository
        self._client = httpx.Client(
            base_url=api_url.rstrip("/"), timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": API_VERSION, "User-Agent": "prefect-agentic"},
        )

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def open_pull_request(self, *, title: str, body: str, head: str, base: str,
                          draft: bool = False) -> PullRequest:
        """Create the pull request ``head`` → ``base``, or update the open one."""
        owner = self.repository.split("/", 1)[0]
        pulls = f"/repos/{self.repository}/pulls"
        existing = self._call("GET", pulls, params={"head": f"{owner}:{head}", "base": base, "state": "open"})
        if existing:
            number = existing[0]["number"]
            updated = self._call("PATCH", f"{pulls}/{number}", json={"title": title, "body": body})
            return PullRequest(number, updated["html_url"], created=False)
        made = self._call("POST", pulls, json={"title": title, "body": body, "head": head, "base": base,
                                              "draft": draft})
        return PullRequest(made["number"], made["html_url"], created=True)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        where = f"{method} {self._client.base_url}{path}"
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise GitHubUnavailableError(f"GitHub did not answer in time ({where})") from None
        except httpx.TransportError as exc:
            raise GitHubUnavailableError(f"cannot reach GitHub ({where}): {exc}") from None
        if response.status_code >= 500:
            raise GitHubUnavailableError(f"GitHub failed ({where}): HTTP {response.status_code}")
        if response.status_code >= 400:
            raise GitHubError(f"GitHub refused {where}: HTTP {response.status_code}: "
                              f"{_said(response)}{_hint(response.status_code)}")
        return response.json()


def _said(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    details = [e.get("message") or f"{e.get('field')} {e.get('code')}" for e in data.get("errors", [])
               if isinstance(e, dict)]
    return "; ".join([str(data.get("message", "")), *details]).strip("; ")


def _hint(status: int) -> str:
    if status == 401:
        return " (check the token in the Secret block the step names)"
    if status in (403, 404):
        return " (check the repository name and that the token may open pull requests in it)"
    if status == 422:
        return " (is the head branch pushed, and does the base branch exist?)"
    return ""
