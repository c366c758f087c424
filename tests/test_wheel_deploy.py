"""Workers without a checkout: the pack installed from a wheel, deployed from a team's own project.

A wheel built with `pip wheel --no-deps`, installed into a fresh virtualenv in a
temporary directory; a real `prefect server start` and a real process worker
run from that virtualenv, in directories that hold no checkout of the pack.
A scratch project with the minimal `prefect.yaml` of docs/guides/wheel-deployments.md is
deployed with `prefect deploy` and a plan runs to completion. The virtualenv
gets the pack only from the wheel; its dependencies (Prefect & co.) are the
test environment's, reached through a path entry, so the test needs no
package index beyond the wheel build's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deploy_helpers import ROOT, free_port, fresh_checkout
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings
from test_deploy import TINY, _submitted_id

from prefect_agentic.stack import wait_healthy

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TEAM_PREFECT_YAML = """\
name: team-agentic
prefect-version: 3.9.1
pull: []
deployments:
  - name: team
    entrypoint: prefect_agentic.flows.run_plan:run_plan
    work_pool: {name: agentic-process}
"""


@dataclass
class WheelStack:
    """A server and a worker run by ``python`` of a virtualenv that has the pack from a wheel."""

    home: Path
    python: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, *command: str, cwd: Path, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``agentic …`` (the wheel's console script) or ``prefect …`` (python -m prefect)."""
        argv = ([str(self.python.parent / "agentic"), *command[1:]] if command[0] == "agentic"
                else [str(self.python), "-m", *command])
        return subprocess.run(argv, check=False, cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def deploy_team_project(self, project: Path) -> None:
        """A team's project directory whose prefect.yaml names the pack's deployments, deployed by this install."""
        project.mkdir()
        (project / "prefect.yaml").write_text(TEAM_PREFECT_YAML)
        deployed = self.run("prefect", "--no-prompt", "deploy", "--all", cwd=project)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    def start(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        log = (self.home / f"{name}.log").open("ab")
        process = subprocess.Popen([str(self.python), "-m", *command], cwd=self.home, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        with temporary_settings({PREFECT_API_URL: self.env["PREFECT_API_URL"]}), \
                get_client(sync_client=True) as client:
            yield client

    def stop(self) -> None:
        for process in reversed(self.processes):
            try:
                os.killpg(process.pid, 15)
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
            except ProcessLookupError:
                pass


def _wheel(tmp: Path) -> Path:
    """`pip wheel --no-deps` of this repository's files (a fresh-clone copy, so no build dirs here)."""
    source = fresh_checkout(tmp / "source")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--wheel-dir", str(tmp / "dist"), str(source)],
                           check=False, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    shutil.rmtree(source)
    [wheel] = (tmp / "dist").glob("prefect_agentic-*.whl")
    return wheel


def _venv_with(wheel: Path, venv: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                                "--quiet", "--no-deps", str(wheel)],
                               check=False, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies: a plain path entry (its .pth files, like the editable install's, are not run).
    Path(site, "agentic_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.fixture(scope="module")
def wheel_stack(tmp_path_factory, sandbox_image) -> Iterator[WheelStack]:  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("wheel-stack")
    python = _venv_with(_wheel(home), home / "venv")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "PYTHONPATH"))}
    env.update({"PREFECT_HOME": str(home / "prefect"), "AGENTIC_HOME": str(home / "agentic"),
                "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_WORKER_QUERY_SECONDS": "1", "PATH": f"{python.parent}{os.pathsep}{env['PATH']}"})
    stack = WheelStack(home, python, env)
    try:
        server = stack.start("server", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        wait_healthy(env["PREFECT_API_URL"], server, home / "server.log", 120)
        init = stack.run("agentic", "init", cwd=home)
        assert init.returncode == 0, init.stdout + init.stderr
        stack.start("worker", "prefect", "worker", "start", "--pool", "agentic-process", "--type", "process",
                    "--name", "wheel-worker")
        yield stack
    finally:
        stack.stop()


def test_the_virtualenv_has_the_pack_from_the_wheel_only(wheel_stack: WheelStack) -> None:
    where = subprocess.run([str(wheel_stack.python), "-c", "import prefect_agentic; print(prefect_agentic.__file__)"],
                           cwd=wheel_stack.home, env=wheel_stack.env, check=True, capture_output=True,
                           text=True).stdout.strip()
    assert where.startswith(str(wheel_stack.home / "venv")), where
    assert str(ROOT) not in where


def test_a_team_project_deploys_the_installed_pack_and_a_plan_runs_to_completion(  # type: ignore[no-untyped-def]
        wheel_stack: WheelStack, make_repo, tmp_path: Path) -> None:
    project = tmp_path / "team-project"
    wheel_stack.deploy_team_project(project)

    repo = make_repo({"test_ok.py": "def test_ok():\n    assert True\n"})
    (project / "tiny.yaml").write_text(TINY)
    submit = wheel_stack.run("agentic", "submit", "tiny.yaml", "--repo", str(repo), "--deployment",
                             "run-plan/team", "--sandbox-block", "default", "--wait", "--timeout", "240",
                             cwd=project)
    worker_log = (wheel_stack.home / "worker.log").read_text(errors="replace")
    assert submit.returncode == 0, submit.stdout + submit.stderr + worker_log[-3000:]
    assert submit.stdout.splitlines()[-1] == "flow run tiny v1: Say hello and run the tests: Completed"
    with wheel_stack.client() as client:
        deployment = client.read_deployment(client.read_flow_run(_submitted_id(submit.stdout)).deployment_id)
    assert (deployment.entrypoint, deployment.pull_steps) == ("prefect_agentic.flows.run_plan:run_plan", [])


def test_the_packs_own_prefect_yaml_deploys_from_any_directory_and_nightly_needs_a_repository(
        wheel_stack: WheelStack, tmp_path: Path) -> None:
    project = tmp_path / "elsewhere"
    project.mkdir()
    shutil.copy(ROOT / "prefect.yaml", project / "prefect.yaml")
    refused = wheel_stack.run("prefect", "--no-prompt", "deploy", "--name", "test-and-report/nightly",
                              cwd=project, env={"AGENTIC_NIGHTLY_REPO": ""})
    assert refused.returncode != 0
    said = " ".join((refused.stdout + refused.stderr).split())
    assert "deployment test-and-report/nightly needs a repository and none is set: set AGENTIC_NIGHTLY_REPO" in said
    assert _deployment_repo(wheel_stack, "test-and-report/nightly") == "missing"

    deployed = wheel_stack.run("prefect", "--no-prompt", "deploy", "--name", "test-and-report/nightly",
                               "--name", "run-plan/default", cwd=project,
                               env={"AGENTIC_NIGHTLY_REPO": "/srv/repos/app"})
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert _deployment_repo(wheel_stack, "test-and-report/nightly") == "/srv/repos/app"
    assert _deployment_repo(wheel_stack, "run-plan/default") == "None"


def _deployment_repo(stack: WheelStack, name: str) -> str:
    """The deployment's ``repo`` parameter, "None" without one, "missing" when there is no deployment."""
    with stack.client() as client:
        try:
            return str(client.read_deployment_by_name(name).parameters.get("repo"))
        except ObjectNotFound:
            return "missing"
