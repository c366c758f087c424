"""The Docker work pool: prefect-docker's worker runs a plan's flow run in a container.

The flow-run container is the pack's flow-runner image (built offline by
`scripts/build-flow-image.sh`, tagged with a hash of this checkout's code, so
the container runs the code under test). It reaches the Prefect server, bound
to 127.0.0.1, through the host's network; it starts the step sandboxes on the
host's Docker engine through the mounted socket (the sandbox settings'
`DockerHost` block). The sandboxes' bind mounts are resolved by that engine,
so the workspaces and the repository are mounted at the same paths inside the
flow-run container as on the host. The container cannot mount a size-limited
workspace (no CAP_SYS_ADMIN): a run that asks for a limit stops before its
first step, and `run-plan/docker` opts out explicitly (prefect.yaml).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from deploy_helpers import PrefectStack, free_port
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from test_deploy import TINY, _submitted_id

from prefect_agentic.workspace import resolve_base, run_key

pytestmark = [pytest.mark.docker, pytest.mark.slow]

POOL = "agentic-docker"


@pytest.fixture(scope="module")
def flow_runner_image(sandbox_image: str) -> str:
    """This checkout's flow-run image (`scripts/setup.sh flow_image` builds it; else built here)."""
    script = str(ROOT / "scripts" / "build-flow-image.sh")
    tag = subprocess.run([script, "--print-content-tag"], check=True, capture_output=True,
                         text=True).stdout.strip()
    if subprocess.run(["docker", "image", "inspect", tag], check=False, capture_output=True).returncode != 0:
        built = subprocess.run([script, "--content"], check=False, capture_output=True, text=True)
        assert built.returncode == 0, built.stdout + built.stderr
    return tag


@pytest.fixture()
def docker_stack(tmp_path: Path, flow_runner_image: str) -> Iterator[PrefectStack]:
    """A server, `agentic init`, run-plan/docker deployed with this machine's paths, a Docker worker."""
    stack = PrefectStack(tmp_path / "stack", free_port())
    stack.start_server()
    try:
        init = stack.run("agentic", "init")
        assert f"work pool {POOL}: created" in init.stdout, init.stdout + init.stderr
        _use_paths(stack.checkout / "prefect.yaml", flow_runner_image, Path(stack.env["AGENTIC_HOME"]),
                   tmp_path / "repos")
        deploy = stack.run("prefect", "--no-prompt", "deploy", "--name", "run-plan/docker")
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        stack.start_worker("docker", pool=POOL)
        yield stack
    finally:
        stack.stop_workers()
        stack.stop_server()


def _use_paths(prefect_yaml: Path, image: str, agentic_home: Path, repos: Path) -> None:
    """What a platform team edits in prefect.yaml: the image, and host paths mounted as themselves."""
    config = yaml.safe_load(prefect_yaml.read_text())
    variables = config["definitions"]["work_pools"]["docker"]["job_variables"]
    variables["image"] = image
    variables["volumes"] = ["/var/run/docker.sock:/var/run/docker.sock",
                            f"{agentic_home}:{agentic_home}", f"{repos}:{repos}:ro"]
    variables["env"] = {"AGENTIC_HOME": str(agentic_home)}
    docker_deployment = next(d for d in config["deployments"] if d["work_pool"]["name"] == POOL)
    docker_deployment["work_pool"] = config["definitions"]["work_pools"]["docker"]
    prefect_yaml.write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_docker_worker_runs_a_plan_in_a_flow_run_container_with_sandboxes_on_the_host_engine(  # type: ignore[no-untyped-def]
        docker_stack: PrefectStack, flow_runner_image: str, docker_client, tmp_path: Path,
        make_repo) -> None:
    repos = tmp_path / "repos"
    repos.mkdir()
    repo = make_repo({"test_ok.py": "def test_ok():\n    assert True\n"}, name="repos/app")
    (tmp_path / "tiny.yaml").write_text(TINY)
    # The default sandbox block asks for the default 8g workspace limit, which a flow-run container
    # (no CAP_SYS_ADMIN) cannot mount: the run stops before its first step, naming the limit.
    refused = docker_stack.run("agentic", "submit", str(tmp_path / "tiny.yaml"), "--repo", str(repo),
                               "--deployment", "run-plan/docker", "--sandbox-block", "default",
                               "--wait", "--timeout", "300")
    assert refused.stdout.splitlines()[-1] == "flow run tiny v1: Say hello and run the tests: Failed", (
        refused.stdout + refused.stderr + docker_stack.worker_log("docker")[-3000:])
    refused_id = _submitted_id(refused.stdout)
    with docker_stack.client() as client:
        failed = client.read_flow_run(refused_id)
        assert not client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[refused_id])))
    docker_client.containers.get(failed.infrastructure_pid.rsplit(":", 1)[1]).remove(force=True)
    message = " ".join(str(failed.state.message).split())
    assert "the workspace size limit 8g cannot be enforced" in message, message
    assert "an empty SandboxSettings.workspace_size means no limit" in message

    # The deployment's own sandbox parameter opts out explicitly (prefect.yaml: workspace_size: null).
    submit = docker_stack.run("agentic", "submit", str(tmp_path / "tiny.yaml"), "--repo", str(repo),
                              "--deployment", "run-plan/docker", "--wait", "--timeout", "300")
    assert submit.returncode == 0, submit.stdout + submit.stderr + docker_stack.worker_log("docker")[-3000:]
    assert submit.stdout.splitlines()[-1] == "flow run tiny v1: Say hello and run the tests: Completed"

    flow_run_id = _submitted_id(submit.stdout)
    with docker_stack.client() as client:
        flow_run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    assert flow_run.parameters["sandbox"]["workspace_size"] is None
    # prefect-docker records the container as the run's infrastructure: "<engine url>:<container id>"
    container = docker_client.containers.get(flow_run.infrastructure_pid.rsplit(":", 1)[1])
    try:
        assert flow_runner_image in container.image.tags
        assert container.attrs["State"]["ExitCode"] == 0
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        mounts = {m["Source"]: m["Destination"] for m in container.attrs["Mounts"]}
        assert mounts["/var/run/docker.sock"] == "/var/run/docker.sock"
        assert mounts[docker_stack.env["AGENTIC_HOME"]] == docker_stack.env["AGENTIC_HOME"]
    finally:
        container.remove(force=True)
    assert sorted((t.name.split("-")[0], t.state.name) for t in tasks) == [("hello", "Completed"),
                                                                             ("tests", "Completed")]
    # The sandbox wrote the workspace through the host engine; the flow-run container committed it;
    # both at the host path, so the snapshot is here.
    key = run_key("tiny", repo, resolve_base(repo, "HEAD"))
    workspace = Path(docker_stack.env["AGENTIC_HOME"]) / "workspaces" / key
    shown = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(workspace), "show",
                            "refs/agentic/snapshots/tiny/hello:out.txt"],
                           check=False, capture_output=True, text=True)
    assert shown.stdout == "hello\n", shown.stderr
