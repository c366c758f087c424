"""Escape and abuse attempts against the sandbox, through a real plan run on real Docker.

One plan holds every attack as an independent step next to an innocent one.
Each attack must fail, the run report must say clearly why, and the host and
the other steps must be unaffected. The README's table lists these tests.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
import yaml
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.flows.run_plan import RunReport, StepReport, run_plan
from prefect_agentic.plan import parse_plan

pytestmark = pytest.mark.usefixtures("prefect_api")

FORK_BOMB = """
import os, sys, time
for _ in range(10_000):
    try:
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
    except BlockingIOError:
        print("fork refused", flush=True)
        time.sleep(1)
        sys.exit(1)
"""


class HostListener:
    """A TCP service on the host's loopback that records every connection it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


@pytest.fixture(scope="module", params=["runc", "runsc"])
def attack_run(request, tmp_path_factory, sandbox_image: str) -> tuple[RunReport, HostListener, Path]:  # type: ignore[no-untyped-def]
    """The whole attack plan, under Docker's default runtime and under gVisor."""
    import subprocess

    from conftest import git_commit_all

    listener = HostListener()
    secret = tmp_path_factory.mktemp("host") / "host-secret.txt"
    secret.write_text("top secret\n")
    repo = tmp_path_factory.mktemp("attack") / "repo"
    repo.mkdir()
    (repo / "README").write_text("attack target\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    git_commit_all(repo, "initial")
    connect = ("import socket; socket.create_connection(('{host}', {port}), timeout=3)")
    steps = {
        "dns": ["python3", "-c", "import socket; socket.gethostbyname('pypi.org')"],
        "tcp_loopback": ["python3", "-c", connect.format(host="127.0.0.1", port=listener.port)],
        "tcp_host_gateway": ["python3", "-c", connect.format(host="172.17.0.1", port=listener.port)],
        "fork_bomb": ["python3", "-c", FORK_BOMB],
        "memory": ["python3", "-c", "x = bytearray(768 * 1024 * 1024); print(len(x))"],
        "fill_tmp": ["sh", "-c", "head -c 200M /dev/zero > /tmp/fill"],
        "write_outside": ["sh", "-c", "echo pwned > /etc/pwned"],
        "read_host_secret": ["cat", str(secret)],
        "docker_socket": ["sh", "-c", "test -S /var/run/docker.sock"],
        "become_root": ["python3", "-c", "import os; os.setuid(0)"],
        "ignore_sigterm": ["sh", "-c", "trap '' TERM; sleep 120"],
        "gigabyte_stdout": ["sh", "-c", "head -c 1G /dev/zero | tr '\\\\0' x; echo; echo END"],
        "innocent": ["sh", "-c", "echo fine"],
        "kernel": ["sh", "-c", "dmesg 2>&1; true"],  # gVisor's own kernel log says it is gVisor
    }
    # A gigabyte through gVisor's ptrace platform takes minutes on a loaded machine; the
    # claim is the cap, not the speed.
    timeouts = {"ignore_sigterm": 3, "gigabyte_stdout": 600}
    plan = {
        "id": "attacks", "goal": "try to break out",
        "steps": [{"id": name, "tool": "shell", "args": {"command": argv},
                   "timeout_seconds": timeouts.get(name, 60)}
                  for name, argv in steps.items()],
    }
    settings = SandboxSettings(image=sandbox_image, memory="256m", pids=64, tmp_size="16m", runtime=request.param)
    # One step at a time: parallel steps share a warm container and so its process limit, and the
    # fork bomb running next to another step would starve that step of processes.
    sequential = run_plan.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    state = sequential(plan=parse_plan(yaml.safe_dump(plan)), repo=str(repo), sandbox=settings,
                       return_state=True)
    outcome = state.result(raise_on_failure=False)
    assert isinstance(outcome, PlanRunFailed), outcome
    yield outcome.report, listener, secret
    listener.sock.close()


def step(report: RunReport, step_id: str) -> StepReport:
    return next(s for s in report.steps if s.step_id == step_id)


def failed_with(report: RunReport, step_id: str, *phrases: str) -> None:
    s = step(report, step_id)
    assert s.status.value == "failed", (step_id, s)
    for phrase in phrases:
        assert phrase in (s.reason or ""), (step_id, s.reason)


def test_dns_lookups_fail(attack_run) -> None:  # type: ignore[no-untyped-def]
    failed_with(attack_run[0], "dns", "exit code 1", "gaierror")


def test_tcp_to_a_loopback_service_on_the_host_fails(attack_run) -> None:  # type: ignore[no-untyped-def]
    report, listener, _ = attack_run
    failed_with(report, "tcp_loopback", "ConnectionRefusedError")
    failed_with(report, "tcp_host_gateway", "exit code 1")
    assert listener.accepted == 0


def test_fork_bomb_hits_the_process_limit(attack_run, request) -> None:  # type: ignore[no-untyped-def]
    report = attack_run[0]
    if request.node.callspec.params["attack_run"] == "runsc":
        # gVisor refuses the fork in its own kernel (RLIMIT_NPROC), which the host's cgroup
        # counters never see, so the report shows the command's own words; or the sandbox
        # kernel's memory for 64 processes reaches the memory limit first.
        bomb = step(report, "fork_bomb")
        assert bomb.status.value == "failed", bomb
        if "out of memory (sandbox memory limit (256m))" not in (bomb.reason or ""):
            assert "exit code 1" in (bomb.reason or ""), bomb.reason
            assert "fork refused" in (bomb.output or {}).get("stdout", ""), bomb
    else:
        failed_with(report, "fork_bomb", "process limit (64)", "new processes were refused")


def test_memory_past_the_limit_is_reported_as_out_of_memory(attack_run) -> None:  # type: ignore[no-untyped-def]
    failed_with(attack_run[0], "memory", "killed: out of memory (sandbox memory limit (256m))")


def test_filling_tmp_stops_at_the_tmpfs_cap(attack_run) -> None:  # type: ignore[no-untyped-def]
    failed_with(attack_run[0], "fill_tmp", "No space left on device")


def test_writing_outside_the_workspace_fails(attack_run) -> None:  # type: ignore[no-untyped-def]
    # runc says the root is read-only; gVisor checks the permission first (uid 10001, root-owned /etc)
    reason = step(attack_run[0], "write_outside").reason or ""
    assert "Read-only file system" in reason or "Permission denied" in reason, reason
    failed_with(attack_run[0], "write_outside", "cannot create /etc/pwned")
    assert not Path("/etc/pwned").exists()


def test_host_files_and_the_docker_socket_are_out_of_reach(attack_run) -> None:  # type: ignore[no-untyped-def]
    report, _, secret = attack_run
    failed_with(report, "read_host_secret", "No such file or directory")
    assert "top secret" not in (step(report, "read_host_secret").reason or "")
    failed_with(report, "docker_socket", "exit code 1")
    assert secret.read_text() == "top secret\n"


def test_becoming_root_fails(attack_run) -> None:  # type: ignore[no-untyped-def]
    failed_with(attack_run[0], "become_root", "PermissionError")


def test_a_command_ignoring_sigterm_is_killed_at_its_timeout(attack_run) -> None:  # type: ignore[no-untyped-def]
    failed_with(attack_run[0], "ignore_sigterm", "exceeded the step timeout of 3s and was killed")


def test_a_gigabyte_of_stdout_is_capped_and_the_step_still_succeeds(attack_run, request) -> None:  # type: ignore[no-untyped-def]
    s = step(attack_run[0], "gigabyte_stdout")
    if request.node.callspec.params["attack_run"] == "runsc":
        # Under gVisor with the 256m memory limit the stream is cut off before END (seen here;
        # without a memory limit all of it arrives); what reaches us is capped all the same.
        assert s.output and len(s.output["stdout"]) < 1_100_000
        return
    assert s.status.value == "completed"
    assert s.output and s.output["output_truncated"] is True
    assert len(s.output["stdout"]) < 1_100_000 and s.output["stdout"].rstrip().endswith("END")


def test_other_steps_are_unaffected(attack_run) -> None:  # type: ignore[no-untyped-def]
    s = step(attack_run[0], "innocent")
    assert s.status.value == "completed" and s.output and s.output["stdout"] == "fine\n"


def test_the_attack_plan_ran_under_the_runtime_it_names(attack_run, request) -> None:  # type: ignore[no-untyped-def]
    kernel_log = step(attack_run[0], "kernel").output["stdout"]
    assert ("Starting gVisor" in kernel_log) == (request.node.callspec.params["attack_run"] == "runsc"), kernel_log


@pytest.mark.parametrize("runtime", ["runc", "runsc"])
def test_the_process_has_no_capabilities_and_no_privileges(sandbox_image: str, make_repo, runtime: str) -> None:  # type: ignore[no-untyped-def]
    from prefect_agentic.sandbox.runner import open_sandbox

    box = open_sandbox(SandboxSettings(image=sandbox_image, runtime=runtime), make_repo({"f": "x"}),
                       f"caps-{runtime}-{os.getpid()}")
    try:
        # no_new_privs asked of the kernel (prctl PR_GET_NO_NEW_PRIVS): gVisor's /proc shows no such line
        status = box.run(["sh", "-c", "id -u; grep -E '^(CapEff|CapPrm)' /proc/self/status; python3 -c "
                          "'import ctypes; print(\"NoNewPrivs:\", ctypes.CDLL(None).prctl(39, 0, 0, 0, 0), sep=\"\\t\")'"],
                         timeout=30).stdout.split("\n")
    finally:
        box.close()
    assert status[0] != "0"
    assert "CapEff:\t0000000000000000" in status and "CapPrm:\t0000000000000000" in status
    assert "NoNewPrivs:\t1" in status
