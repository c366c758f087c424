"""Secrets reach only the steps the policy grants them to, and are redacted everywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from prefect.blocks.system import Secret
from pydantic import SecretStr

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.flows.run_plan import run_plan
from prefect_agentic.plan import parse_plan
from prefect_agentic.secrets import REDACTED

pytestmark = pytest.mark.usefixtures("prefect_api")

TOKEN = "tok-8c1f42d9e7"
PASSWORD = "pw-55aa0e13b2"


def files_containing(root: Path, needle: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if ".images" in path.parts:  # workspace filesystem images (sparse, 8 GiB); their files are read
            continue                 # through the mounted worktrees
        if path.is_file() and not path.is_symlink():
            try:
                if needle.encode() in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def test_a_step_that_prints_its_secrets_shows_them_redacted_everywhere(
        make_repo, sandbox_image: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    Secret(value=PASSWORD).save("db-password", overwrite=True)
    repo = make_repo(files={"README.md": "s\n"})
    caplog.set_level("DEBUG")
    plan = yaml.safe_dump({"id": "secrets-test", "goal": "leak on purpose", "steps": [
        {"id": "leak", "tool": "shell", "secrets": ["api-token", "db-password"],
         "args": {"command": 'echo "token=$API_TOKEN password=$DB_PASSWORD"; echo "$API_TOKEN" >&2'}},
        {"id": "fail-loudly", "tool": "shell", "secrets": ["api-token"], "depends_on": ["leak"],
         "args": {"command": 'echo "about to fail with $API_TOKEN"; exit 3'}},
        {"id": "ungranted", "tool": "shell", "args": {"command": 'echo "${API_TOKEN:-unset}"'}},
    ]})
    policy = ToolPolicy(secret_grants={"leak": ["api-token", "db-password"], "fail-*": ["api-token"]})
    state = run_plan(plan=parse_plan(plan, policy=policy), repo=str(repo), policy=policy,
                     secrets={"api-token": SecretStr(TOKEN)},
                     sandbox=SandboxSettings(image=sandbox_image), return_state=True)
    failure = state.result(raise_on_failure=False)
    assert isinstance(failure, PlanRunFailed)
    report = failure.report
    leak, fail_loudly, ungranted = report.steps

    assert leak.output["stdout"] == f"token={REDACTED} password={REDACTED}\n"
    assert leak.output["stderr"] == f"{REDACTED}\n"
    assert f"about to fail with {REDACTED}" in fail_loudly.reason
    assert ungranted.output["stdout"] == "unset\n"

    everything = report.model_dump_json() + str(failure) + caplog.text
    assert TOKEN not in everything and PASSWORD not in everything
    state_dirs = [Path(os.environ["PREFECT_HOME"]), Path(os.environ["AGENTIC_HOME"])]
    assert [p for d in state_dirs for s in (TOKEN, PASSWORD) for p in files_containing(d, s)] == []


def test_a_secret_the_policy_does_not_grant_is_refused_before_the_run(make_repo) -> None:  # type: ignore[no-untyped-def]
    from prefect_agentic.errors import PlanError

    plan = yaml.safe_dump({"id": "secrets-test", "goal": "ask", "steps": [
        {"id": "ask", "tool": "shell", "secrets": ["api-token"], "args": {"command": "true"}}]})
    with pytest.raises(PlanError, match="the policy grants this step no secret 'api-token'"):
        parse_plan(plan, policy=ToolPolicy(secret_grants={"other": ["api-token"]}))
