"""The Docker sandbox, on a real engine, in both modes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.errors import SandboxImageMissingError
from prefect_agentic.sandbox.runner import LABEL_RUN, _oom_event_logged, open_sandbox
from prefect_agentic.workspace import Workspace

MODES = ["per_step", "warm"]


@pytest.fixture
def workspace(make_repo) -> Path:  # type: ignore[no-untyped-def]
    repo = make_repo({"hello.txt": "hi\n"})
    Workspace(repo, SandboxSettings().workspace_owner()).hand_over()  # as a run does
    return repo


@pytest.fixture(params=MODES)
def sandbox(request, sandbox_image: str, workspace: Path):  # type: ignore[no-untyped-def]
    settings = SandboxSettings(image=sandbox_image, mode=request.param, output_limit_bytes=64_000)
    box = open_sandbox(settings, workspace, f"test-{request.param}-{os.getpid()}")
    yield box
    box.close()


def run_containers(docker_client, key: str) -> list:  # type: ignore[no-untyped-def]
    return docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={key}"})


def test_exit_code_and_streams(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox.run(["sh", "-c", "cat hello.txt; echo oops >&2; exit 3"], timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "hi\n", "oops\n")
    assert not result.timed_out and not result.output_truncated


def test_workspace_is_writable_but_git_metadata_is_read_only(sandbox, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    result = sandbox.run(["sh", "-c", "echo new > made.txt && touch .git/hooks/pre-commit"], timeout=30)
    assert result.exit_code != 0 and "Read-only file system" in result.stderr
    assert (workspace / "made.txt").read_text() == "new\n"
    assert not (workspace / ".git" / "hooks" / "pre-commit").exists()


def test_environment_is_only_what_is_given(sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOST_SECRET", "do-not-leak")
    result = sandbox.run(["sh", "-c", "env"], timeout=30, env={"GIVEN": "yes"})
    assert "GIVEN=yes" in result.stdout
    assert "HOST_SECRET" not in result.stdout


def test_networking_is_off(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox.run(["sh", "-c", "ls /sys/class/net"], timeout=30)
    assert result.stdout.split() == ["lo"]
    probe = "import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)"
    assert sandbox.run(["python3", "-c", probe], timeout=30).exit_code != 0


def test_output_is_capped_keeping_head_and_tail(sandbox) -> None:  # type: ignore[no-untyped-def]
    script = "print('FIRST'); [print('x' * 99) for _ in range(50000)]; print('LAST')"
    result = sandbox.run(["python3", "-c", script], timeout=60)
    assert result.exit_code == 0 and result.output_truncated
    assert result.stdout.startswith("FIRST") and result.stdout.rstrip().endswith("LAST")
    assert "bytes of output omitted" in result.stdout
    assert len(result.stdout) < 70_000


def test_timeout_kills_the_command(sandbox, docker_client) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = sandbox.run(["sh", "-c", "trap '' TERM; echo started; sleep 60"], timeout=2)
    assert result.timed_out
    assert result.stdout == "started\n"
    assert time.monotonic() - started < 45  # killed long before the 60 s sleep, even when loaded
    # the sandbox still works afterwards
    assert sandbox.run(["true"], timeout=30).exit_code == 0


def test_per_step_containers_are_always_removed(sandbox_image: str, workspace: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    key = f"test-removed-{os.getpid()}"
    box = open_sandbox(SandboxSettings(image=sandbox_image), workspace, key)
    box.run(["true"], timeout=30)
    box.run(["sleep", "30"], timeout=1)
    assert run_containers(docker_client, key) == []


def test_close_removes_the_warm_container(sandbox_image: str, workspace: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    key = f"test-warm-close-{os.getpid()}"
    box = open_sandbox(SandboxSettings(image=sandbox_image, mode="warm"), workspace, key)
    box.run(["true"], timeout=30)
    assert len(run_containers(docker_client, key)) == 1
    box.close()
    assert run_containers(docker_client, key) == []


def test_leftovers_of_a_killed_run_are_removed_when_it_starts_again(sandbox_image: str, workspace: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    key = f"test-leftover-{os.getpid()}"
    box = open_sandbox(SandboxSettings(image=sandbox_image, mode="warm"), workspace, key)
    box.run(["true"], timeout=30)  # the warm container stays, as if the process had died
    assert len(run_containers(docker_client, key)) == 1
    open_sandbox(SandboxSettings(image=sandbox_image, mode="warm"), workspace, key).close()
    assert run_containers(docker_client, key) == []


def test_missing_image_says_how_to_build_it(docker_client, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SandboxImageMissingError, match="build-sandbox-image.sh"):
        open_sandbox(SandboxSettings(image="prefect-agentic/no-such-image:0"), workspace, "x")


def test_a_wheelhouse_is_mounted_read_only_and_only_when_set(sandbox_image: str, workspace: Path,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir(mode=0o755)
    (wheels / "centlib-2.0.0-py3-none-any.whl").write_text("not really a wheel")
    with_wheels = SandboxSettings(image=sandbox_image, wheelhouse=str(wheels))
    box = open_sandbox(with_wheels, workspace, f"test-wheelhouse-{os.getpid()}")
    try:
        result = box.run(["sh", "-c", "ls /wheelhouse && touch /wheelhouse/planted"], timeout=30)
    finally:
        box.close()
    assert result.stdout == "centlib-2.0.0-py3-none-any.whl\n"
    assert result.exit_code != 0 and "Read-only file system" in result.stderr
    assert sorted(p.name for p in wheels.iterdir()) == ["centlib-2.0.0-py3-none-any.whl"]
    plain = open_sandbox(SandboxSettings(image=sandbox_image), workspace, f"test-no-wheelhouse-{os.getpid()}")
    try:
        assert plain.run(["test", "-e", "/wheelhouse"], timeout=30).exit_code == 1
    finally:
        plain.close()


def test_a_container_killed_from_outside_is_not_called_out_of_memory(sandbox_image: str, workspace: Path,  # type: ignore[no-untyped-def]
                                                                      docker_client) -> None:
    key = f"test-killed-{os.getpid()}"
    box = open_sandbox(SandboxSettings(image=sandbox_image), workspace, key)
    killer = threading.Thread(target=_kill_when_running, args=(docker_client, key), daemon=True)
    killer.start()
    result = box.run(["sleep", "60"], timeout=120)
    killer.join()
    assert (result.exit_code, result.oom_killed, result.timed_out) == (137, False, False)


def test_an_oom_kill_is_found_in_the_engine_log_after_the_container_is_gone(sandbox_image: str,  # type: ignore[no-untyped-def]
                                                                             docker_client) -> None:
    """The fallback for an OOM event that reaches the engine after the exit (seen under gVisor).

    Up to three containers are killed for memory: in a full run of the suite (two test
    processes) the engine's log had no OOM event for the one container of this test after
    15 s of asking, although it had one for each of 18 such containers in a row by hand, idle
    or under CPU load. An event the engine never logs is one this fallback cannot find either.
    """
    assert any(_oom_logged_for_a_fresh_container(sandbox_image, docker_client) for _ in range(3))


def _oom_logged_for_a_fresh_container(sandbox_image: str, docker_client) -> bool:  # type: ignore[no-untyped-def]
    since = time.time()
    container = docker_client.containers.run(
        sandbox_image, ["python3", "-c", "x = bytearray(512 * 1024 * 1024)"], mem_limit="64m",
        memswap_limit="64m", network_mode="none", detach=True)
    try:
        assert container.wait(timeout=120)["StatusCode"] == 137
        return _oom_event_logged(docker_client, container.id, since)
    finally:
        container.remove(force=True)


def _kill_when_running(docker_client, key: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = docker_client.containers.list(filters={"label": f"{LABEL_RUN}={key}", "status": "running"})
        if running:
            running[0].kill()
            return
        time.sleep(0.1)
