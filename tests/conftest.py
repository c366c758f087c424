"""Shared fixtures: an isolated Prefect home, real git repositories, a real Docker engine.

Tests that need Docker use the ``sandbox_image`` fixture. Outside CI they are
skipped when no engine or image is there; with CI=true a missing engine or
image is an error, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Isolate Prefect and prefect-agentic state before anything imports Prefect; the
# subprocesses that tests start inherit these.
_STATE = Path(tempfile.mkdtemp(prefix="agentic-tests-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["AGENTIC_HOME"] = str(_STATE / "agentic")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# A loaded 2-core CI machine can take longer than Prefect's 20 s to start an embedded API.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

# A suite started in the background by a non-interactive shell (`make test &`, nohup) inherits
# SIGINT ignored, and so would every server, worker and CLI it starts: Prefect's worker turns
# SIGTERM into a SIGINT to itself and, ignoring it, never stops. Children get SIGINT's default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEFAULT_IMAGE = os.environ.get("AGENTIC_SANDBOX_IMAGE", "prefect-agentic/sandbox:2")


# The files that take minutes, longest first (from `make test`'s slowest durations). `make test`
# hands whole files to its test processes in collection order, so starting these first lets the
# processes finish together instead of one waiting on a long file picked up last.
LONGEST_FIRST = ("test_scale_out.py", "test_upgrade_service.py", "test_audit_suspend.py", "test_docs.py",
                 "test_task_workers.py", "test_deploy.py", "test_rolling_upgrade.py", "test_cli.py",
                 "test_chaos_recipes.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and {reason}; CI must provide it (see .ci/run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        _missing(f"no Docker engine answers ({exc})")
    return client


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:  # type: ignore[no-untyped-def]
    import docker.errors

    try:
        docker_client.images.get(DEFAULT_IMAGE)
    except docker.errors.ImageNotFound:
        _missing(f"sandbox image {DEFAULT_IMAGE} is not built (run `make setup`)")
    return DEFAULT_IMAGE


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One temporary Prefect server for the session (real API, own SQLite database).

    What Prefect's ``prefect_test_harness`` does, except its end: the harness waits for Prefect's
    log and event services without a bound, and in one run an event service never finished
    (it kept retrying a server a module had stopped), so the session hung after its last test.
    Here the wait is bounded (``prefect_services.drain``).
    """
    import prefect.context
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )
    from prefect_services import drain

    database = tmp_path_factory.mktemp("prefect-api") / "prefect.db"
    with temporary_settings({PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{database}"}):
        server = SubprocessASGIServer()  # the process's default server: embedded-mode code finds it
        server.start(timeout=180)
    try:
        # the global settings too, as the harness does: a thread (a run started in the
        # background by a test) starts without this context's settings
        with temporary_settings({PREFECT_API_URL: server.api_url}), \
                prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()):
            os.environ["PREFECT_API_URL"] = server.api_url  # for subprocesses
            yield server.api_url
            os.environ.pop("PREFECT_API_URL", None)
            drain(timeout=60)
    finally:
        server.stop()


@pytest.fixture(scope="module", autouse=True)
def _prefect_services_restart_after_each_module() -> Iterator[None]:
    """Prefect's event service keeps the API address it started on (its instance key ignores
    PREFECT_API_URL), so a module that points in-process code at a server of its own would send
    the events of every later module there. Each module ends with Prefect's log and event
    services stopped; the next log or event starts them on the address then in force. What a
    service still holds after 10 s is for a server that ended with its module (Prefect retries
    those without end): it is dropped."""
    yield
    if "prefect._internal.concurrency.services" in sys.modules:  # never loaded: nothing runs
        from prefect_services import drain

        drain(timeout=10, warn=False)


@pytest.fixture(scope="session", autouse=True)
def every_audit_log_verifies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the last test: the audit log of every flow run the suite made verifies (audit_check.py)."""
    yield
    from audit_check import audit_logs, broken_audit_logs

    roots = [_STATE, tmp_path_factory.getbasetemp()]
    broken = broken_audit_logs(roots)
    if broken:
        pytest.fail(f"{len(broken)} of {sum(1 for _ in audit_logs(roots))} audit logs the tests left do not "
                    "verify (a test that breaks one on purpose marks it with "
                    "audit_check.expect_broken_audit):\n" + "\n".join(broken), pytrace=False)


def git_commit_all(repo: Path, message: str, date: str = "2026-01-01T00:00:00Z") -> str:
    """Commit everything in ``repo`` with a fixed identity and date; returns the sha."""
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date,
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    identity = ["-c", "user.name=Test Author", "-c", "user.email=author@example.invalid"]
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", *identity, "commit", "-qm", message], cwd=repo, check=True, env=env)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, env=env,
                          capture_output=True, text=True).stdout.strip()


def nest_directories(top: Path, depth: int, leaf: str) -> None:
    """Make ``depth`` directories ``d`` each inside the last below ``top``, and an empty file ``leaf`` at the bottom.

    Deeper than a path may be long: made by descriptor, as a step can make them.
    """
    fd = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(os.open(leaf, os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    os.close(fd)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """Make a git repository from a dict of files, or a copy of an example repo."""

    def make(files: dict[str, str] | None = None, *, example: str | None = None,
             name: str = "repo") -> Path:
        repo = tmp_path / name
        if example:
            shutil.copytree(EXAMPLES / "repos" / example, repo)
        else:
            repo.mkdir()
        for rel, text in (files or {}).items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        git_commit_all(repo, "initial")
        return repo

    return make


def agentic_cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """Run the installed `agentic` command as a user would."""
    return subprocess.run([sys.executable, "-m", "prefect_agentic.cli.main", *args],
                          capture_output=True, text=True, **kwargs)


def agentic_chaos_json(plan: Path, repo: Path, image: str, chaos: str, runs: int, seed: int,  # type: ignore[type-arg]
                       *options: str, server: bool = False, api: str | None = None) -> tuple[dict, str]:
    """`agentic chaos PLAN --json` as a user runs it, on the embedded API or, with ``server``, on the
    Prefect server ``PREFECT_API_URL`` names (the ``prefect_api`` fixture's), or on the one at ``api``:
    its report (once it exited 0) and what it said on stderr (its progress). ``options`` go on the
    command line (``--ref``, blocks…)."""
    env = dict(os.environ) if server else {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    if api:
        env["PREFECT_API_URL"] = api
    result = agentic_cli("chaos", str(plan), "--repo", str(repo), "--runs", str(runs), "--seed", str(seed),
                         "--image", image, "--chaos", chaos, "--json", *options, env=env)
    assert result.returncode == 0, result.stderr + result.stdout[-3000:]
    return json.loads(result.stdout), result.stderr


@pytest.fixture
def llm_server():  # type: ignore[no-untyped-def]
    """A scripted OpenAI-compatible chat-completions server on 127.0.0.1 (see llm_server.py)."""
    from llm_server import ScriptedLLM

    server = ScriptedLLM().start()
    yield server
    server.stop()


@pytest.fixture
def history_repo(tmp_path: Path) -> Callable[[str], Path]:
    """Build an example repository with history (``examples/repos/<name>-history.yaml``)."""

    def make(name: str) -> Path:
        repo = tmp_path / name
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_history_repo.py"),
                        str(EXAMPLES / "repos" / f"{name}-history.yaml"), str(repo)],
                       check=True, capture_output=True)
        return repo

    return make


@pytest.fixture(scope="session", autouse=True)
def _unmount_size_limited_workspaces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run workspaces are loop-mounted images (SandboxSettings.workspace_size): unmount this
    session's at its end (its state dir and its temporary directories only)."""
    yield
    roots = (str(_STATE) + "/", str(tmp_path_factory.getbasetemp()) + "/")
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in reversed(points):
        if point.startswith(roots) and "/workspaces/" in point:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A passing session leaves no state behind (its workspace images add up over many runs)."""
    if exitstatus == 0:
        shutil.rmtree(_STATE, ignore_errors=True)
