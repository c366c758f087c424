"""The `agentic` command as a user runs it: exit codes, messages, JSON output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import EXAMPLES, agentic_cli

DEMO_PLAN = EXAMPLES / "plans" / "fix-lint-demo.yaml"
BAD = Path(__file__).parent / "plans" / "bad"


def test_validate_good_plan() -> None:
    result = agentic_cli("validate", str(DEMO_PLAN))
    assert result.returncode == 0
    assert "valid plan 'fix-lint-demo' v1 with 3 steps" in result.stdout


def test_validate_bad_plan_names_the_place_and_exits_2() -> None:
    result = agentic_cli("validate", str(BAD / "unknown-dependency.yaml"))
    assert result.returncode == 2
    assert "steps[1] 'tests'.depends_on: unknown step 'lnt'" in result.stderr


def test_validate_json() -> None:
    result = agentic_cli("validate", "--json", str(BAD / "cycle.yaml"))
    assert result.returncode == 2
    assert json.loads(result.stdout)["problems"] == ["steps: dependency cycle a -> b -> c -> a"]


def test_schema_validates_plan_files_in_an_editor() -> None:
    result = agentic_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load(DEMO_PLAN.read_text()))) == []
    bad = yaml.safe_load((BAD / "bad-arg-value.yaml").read_text())
    errors = list(validator.iter_errors(bad))
    assert errors and any(list(e.absolute_path)[-2:] == ["args", "mode"] or
                          "lint" in e.message for e in errors for e in [e, *e.context])


def test_tools_lists_the_built_in_tools() -> None:
    result = agentic_cli("tools")
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        "bandit", "bisect", "change_request", "coverage", "ghostwrite", "git", "mcp", "pip", "propose_patch",
        "pytest", "ruff", "service_canary", "service_deploy", "service_image", "service_integration",
        "service_promote", "service_rollback", "service_traffic", "shell"]


@pytest.mark.usefixtures("prefect_api")
def test_run_demo_plan_json(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(example="demo")
    result = agentic_cli("run", str(DEMO_PLAN), "--repo", str(repo), "--image", sandbox_image, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [s["status"] for s in report["steps"]] == ["completed", "completed", "completed"]


@pytest.mark.usefixtures("prefect_api")
def test_run_prints_a_summary_table_and_exits_1_on_failure(make_repo, sandbox_image: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "p.yaml"
    plan.write_text("id: f\ngoal: fail\nsteps:\n  - {id: boom, tool: shell, args: {command: 'exit 4'}}\n")
    result = agentic_cli("run", str(plan), "--repo", str(make_repo({"f": "x"})), "--image", sandbox_image)
    assert result.returncode == 1
    assert "boom: step 'boom': exit code 4, expected 0" in result.stdout
    for column in ("step", "status", "attempts", "cached", "duration", "snapshot"):
        assert column in result.stdout


def test_run_on_something_that_is_not_a_repository(tmp_path: Path) -> None:
    result = agentic_cli("run", str(DEMO_PLAN), "--repo", str(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path} is not a git repository" in result.stderr


def test_run_takes_a_workspace_size_or_none_and_refuses_anything_else(make_repo, sandbox_image: str,  # type: ignore[no-untyped-def]
                                                                      tmp_path: Path) -> None:
    from prefect_agentic.record.audit import parse_log
    from prefect_agentic.record.store import AuditStore

    plan = tmp_path / "plan.yaml"
    plan.write_text("id: sized\ngoal: write\nsteps:\n"
                    "  - {id: a, tool: shell, writes_workspace: true, args: {command: 'echo a > a.txt'}}\n")
    repo = make_repo({"f": "x"})
    bad = agentic_cli("run", str(plan), "--repo", str(repo), "--image", sandbox_image, "--workspace-size", "lots")
    assert bad.returncode == 2 and "--workspace-size: 'lots' is not a size" in bad.stderr, bad.stderr
    unlimited = agentic_cli("run", str(plan), "--repo", str(repo), "--image", sandbox_image, "--json",
                            "--workspace-size", "none")
    assert unlimited.returncode == 0, unlimited.stderr
    records = parse_log(AuditStore().read_log(json.loads(unlimited.stdout)["flow_run_id"]))
    started = next(r for r in records if r.kind == "run_started")
    assert started.data["workspace_limit"] == {"size": None, "opted_out": True}


def test_run_with_a_missing_image(make_repo, docker_client) -> None:  # type: ignore[no-untyped-def]
    result = agentic_cli("run", str(DEMO_PLAN), "--repo", str(make_repo({"f": "x"})),
                         "--image", "prefect-agentic/missing:0")
    assert result.returncode == 3
    assert "sandbox image 'prefect-agentic/missing:0' is not on the Docker engine" in result.stderr


def test_run_with_bad_flags() -> None:
    result = agentic_cli("run", str(DEMO_PLAN), "--concurrency", "0")
    assert result.returncode == 2 and "concurrency" in result.stderr


@pytest.mark.parametrize("api", ["server", "embedded"])
def test_ctrl_c_removes_the_running_container(api: str, make_repo, sandbox_image: str, tmp_path: Path,  # type: ignore[no-untyped-def]
                                              docker_client, request) -> None:
    """Ctrl-C as a terminal sends it: to the CLI's whole process group.

    On the embedded API the group holds Prefect's API server too; that server
    must not die with the run, or the CLI hangs retrying its last API calls.
    """
    env = dict(os.environ)
    if api == "server":
        env["PREFECT_API_URL"] = request.getfixturevalue("prefect_api")
    else:
        env.pop("PREFECT_API_URL", None)
    plan = tmp_path / "p.yaml"
    plan.write_text("id: long\ngoal: wait\nsteps:\n  - {id: wait, tool: shell, args: {command: 'sleep 120'}}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect_agentic.cli.main", "run", str(plan),
         "--repo", str(make_repo({"f": "x"})), "--image", sandbox_image],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while not _long_containers(docker_client, status="running"):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted: cancelling the run" in stderr
    assert _long_containers(docker_client) == []


def _long_containers(docker_client, **filters: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Ids of the managed containers of the 'long' plan, from one list call (a container
    removed meanwhile cannot make a per-container inspect fail)."""
    found = docker_client.api.containers(all=True, filters={"label": "org.prefect-agentic.managed=true", **filters})
    return [c["Id"] for c in found if (c.get("Labels") or {}).get("org.prefect-agentic.run", "").startswith("long-")]
