"""The error boundary of the `agentic` command: every failure the user can fix is one line.

Commands handle the errors they expect (a bad plan file, an unknown block
name). What escapes them is mapped here, once for every command, to one line
that names what is wrong and what to do, and to the documented exit code:

- the Prefect API cannot be reached (connection refused, timeout, a URL that is
  not an HTTP address) or does not answer like a Prefect API: exit 3, "the
  environment is not ready";
- our own typed errors (``AgenticError``): their message, exit 2 for bad input,
  3 for the environment, 1 otherwise;
- the API refusing a request while it is healthy: the refusal, exit 1.

Anything else is a bug and keeps its traceback. This module imports Prefect
and httpx lazily: ``main`` must set Prefect's logging environment before
Prefect is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3

SERVER_HELP = ("start one with `agentic up`, or set PREFECT_API_URL to your server's API address "
               "(e.g. http://127.0.0.1:4200/api)")


@dataclass(frozen=True)
class CliFailure:
    """What the boundary prints (one line after ``error:``) and the exit code."""

    message: str
    code: int


OFFLINE_COMMANDS = frozenset({"schema", "tools", "recipes", "plan", "up", "down", "canaries"})
"""Commands that never talk to the Prefect API."""
BLOCK_FREE_COMMANDS = frozenset({"validate", "replay", "export"})
"""Commands that talk to the Prefect API only to load a saved block (a ``--…-block`` option)."""
OFFLINE_WITH = {("audit", "verify"): "--chain-only"}
"""Commands that need no Prefect API with a flag: ``audit verify --chain-only`` reads no anchor."""


def run(app: Callable[[], object], argv: list[str] | None = None) -> None:
    """Run the click/typer ``app``; a failure the user can fix becomes one line and its exit code.

    A command that needs the Prefect API first checks that the configured one
    answers (``GET /health``, milliseconds): a wrong URL is then named as such,
    not reported later as a missing block, deployment or run.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        if needs_api(args):
            check_api()
        app()
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # classified below; unknown ones are re-raised
        failure = classify(exc)
        if failure is None:
            raise
        _print(failure.message)
        sys.exit(failure.code)


def main() -> None:
    """The ``agentic`` console script."""
    from prefect_agentic.cli.main import app

    run(app)


def needs_api(args: list[str]) -> bool:
    """Whether the command line ``args`` runs a command that talks to a configured Prefect API."""
    import os

    if "--help" in args or configured_api_url() is None:
        return False
    words = [a for a in args if not a.startswith("-")]
    if not words or words[0] in OFFLINE_COMMANDS or OFFLINE_WITH.get(tuple(words[:2])) in args:
        return False
    if words[0] in BLOCK_FREE_COMMANDS:
        return any(a.startswith("--") and a.split("=", 1)[0].endswith("-block") for a in args) or bool(
            os.environ.get("AGENTIC_AUDIT_BLOCK"))
    return True


def check_api() -> None:
    """Raise the transport error, or a ``ApiNotReadyError``, when the configured API does not answer."""
    import httpx

    api = configured_api_url()
    assert api is not None
    response = httpx.get(f"{api.rstrip('/')}/health", timeout=10)
    if response.status_code != 200:
        raise ApiNotReadyError(f"PREFECT_API_URL={api} does not answer like a Prefect API (GET /health: "
                               f"HTTP {response.status_code}); {SERVER_HELP}")


class ApiNotReadyError(Exception):
    """The configured Prefect API answered, but not like a Prefect API."""


def classify(exc: BaseException) -> CliFailure | None:
    """The one-line failure for ``exc`` (or an exception it was raised from); None if unknown."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    from prefect_agentic.errors import AgenticError

    for cause in _chain(exc):
        if isinstance(cause, ApiNotReadyError):
            return CliFailure(str(cause), EXIT_ENVIRONMENT)
        if isinstance(cause, httpx.TransportError):
            return _unreachable(cause)
        if isinstance(cause, (PrefectHTTPStatusError, httpx.HTTPStatusError)):
            return _refused(cause)
        if isinstance(cause, AgenticError):
            return CliFailure(str(cause), agentic_exit_code(cause))
        if isinstance(cause, RuntimeError) and "Failed to reach API at" in str(cause):
            return CliFailure(f"{_one_line(str(cause))}; {SERVER_HELP}", EXIT_ENVIRONMENT)
        if isinstance(cause, RuntimeError) and "ephemeral Prefect API server" in str(cause):
            return CliFailure(
                "Prefect's embedded API did not start in time (a busy machine?): raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (agentic sets 180 unless you set it), or run a server "
                "(`agentic up`) and set PREFECT_API_URL", EXIT_ENVIRONMENT)
    return None


def agentic_exit_code(exc: BaseException) -> int:
    """2 for bad input (plan, workspace, audit log, run id, export target), 3 for the environment, 1 else."""
    from prefect_agentic.errors import (
        AuditError,
        ConcurrencyLimitError,
        DeploymentError,
        PlanError,
        SandboxError,
        StackError,
        WorkspaceError,
    )

    if isinstance(exc, (SandboxError, StackError, DeploymentError, ConcurrencyLimitError)):
        return EXIT_ENVIRONMENT
    from prefect_agentic.cli.runs import RunIdError
    from prefect_agentic.export import ExportError

    if isinstance(exc, (PlanError, WorkspaceError, AuditError, RunIdError, ExportError)):
        return EXIT_USAGE
    return EXIT_FAILED


def configured_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _unreachable(exc: BaseException) -> CliFailure:
    import httpx

    url = _request_url(exc)
    api = configured_api_url()
    why = _transport_reason(exc)
    if api is not None and isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return CliFailure(f"PREFECT_API_URL={api} is not an http(s) address of a Prefect API; "
                          f"{SERVER_HELP}", EXIT_ENVIRONMENT)
    if api is None or (url is not None and not url.startswith(api.rstrip("/"))):
        target = url or "a remote address"
        return CliFailure(f"cannot reach {target} ({why})", EXIT_ENVIRONMENT)
    return CliFailure(f"cannot reach the Prefect API at {api} ({why}); {SERVER_HELP}", EXIT_ENVIRONMENT)


def _refused(exc: BaseException) -> CliFailure:
    """An HTTP error status: a misconfigured URL (no Prefect API there) or a real refusal."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", "?")
    url = _request_url(exc) or "the Prefect API"
    api = configured_api_url()
    if api is not None and url.startswith(api.rstrip("/")) and not _is_prefect_api(api):
        return CliFailure(f"PREFECT_API_URL={api} does not answer like a Prefect API (HTTP {status} "
                          f"from {url}); {SERVER_HELP}", EXIT_ENVIRONMENT)
    if status in (401, 403):
        return CliFailure(f"the Prefect API at {api or url} refused the request (HTTP {status}): set "
                          "PREFECT_API_KEY (Cloud) or PREFECT_API_AUTH_STRING (server) for it",
                          EXIT_ENVIRONMENT)
    detail = _one_line(getattr(response, "text", "") or str(exc))
    return CliFailure(f"the Prefect API refused a request (HTTP {status} from {url}): {detail}", EXIT_FAILED)


def _is_prefect_api(api: str) -> bool:
    """Whether ``api`` answers ``GET /health`` with 200 (every Prefect server and Cloud do)."""
    import httpx

    try:
        return httpx.get(f"{api.rstrip('/')}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _request_url(exc: BaseException) -> str | None:
    try:
        request = exc.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is set
        return None
    return str(request.url) if request is not None else None


def _transport_reason(exc: BaseException) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "refused" in text or "all connection attempts failed" in text:
            return "connection refused"
        if "name" in text or "resolution" in text or "known" in text:
            return "unknown host name"
        return f"cannot connect: {_one_line(str(exc))}"
    return _one_line(str(exc)) or type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or during (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        for inner in getattr(current, "exceptions", ()):  # an exception group (anyio, Python 3.11+)
            if isinstance(inner, BaseException):
                yield from _chain(inner)
        current = current.__cause__ or current.__context__


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _print(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
