"""Secrets reach only the steps the policy grants them to, and are redacted everywhere.

"Everywhere" is what a run stores or lets out: records, the run report, artifacts,
events, Prefect's task results, states and logs. The attacks write a secret into the
workspace, where host code quotes it (an error naming a path, another step's output,
a diff); one redactor holds every secret of the run, so no step or record shows it.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from api_reads import eventually, read_events
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.filesystems import LocalFileSystem
from pydantic import SecretStr

from prefect_agentic.blocks.audit_storage import AuditStorage
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import PlanRunFailed, SecretUnavailableError, StepFailed, ToolError
from prefect_agentic.flows.run_plan import RunReport, run_plan
from prefect_agentic.plan import parse_plan
from prefect_agentic.record.audit import AuditLog, parse_log
from prefect_agentic.record.events import EventEmitter, RunIds
from prefect_agentic.record.store import AuditStore
from prefect_agentic.secrets import REDACTED, SERIALIZED_MASK, Redactor

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


def events_of(flow_run_id: str) -> list[dict[str, Any]]:
    return asyncio.run(read_events(flow_run_id))


async def _prefect_texts(flow_run_id: str) -> dict[str, str]:
    """What Prefect keeps of a flow run, as text: its artifacts, its and its tasks' states, its logs."""
    runs = FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)]))
    async with get_client() as client:
        artifacts = await client.read_artifacts(flow_run_filter=runs)
        flow_run = await client.read_flow_run(uuid.UUID(flow_run_id))
        task_runs = await client.read_task_runs(flow_run_filter=runs)
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])))
    return {
        "artifacts": json.dumps([[a.key, a.type, a.data, a.description] for a in artifacts], default=str),
        "states": json.dumps([flow_run.state.model_dump(mode="json") if flow_run.state else None]
                             + [t.state.model_dump(mode="json") if t.state else None for t in task_runs]),
        "logs": "\n".join(entry.message for entry in logs),
    }


def prefect_texts(flow_run_id: str) -> dict[str, str]:
    return asyncio.run(_prefect_texts(flow_run_id))


def audit_and_result_files_holding(secret: str) -> list[Path]:
    """Stored files (audit logs and objects, Prefect's results) holding ``secret``; the run
    workspaces are the work product and hold what steps wrote."""
    roots = [Path(os.environ["AGENTIC_HOME"]), Path(os.environ["PREFECT_HOME"])]
    return [p for root in roots for p in files_containing(root, secret) if "workspaces" not in p.parts]


def run_hostile(repo: Path, image: str, steps: list[dict[str, Any]], policy: ToolPolicy,
                secrets: dict[str, SecretStr] | None = None, *, fresh: bool = True) -> RunReport:
    plan = parse_plan(yaml.safe_dump({"id": "redact-all", "goal": "leak through the workspace", "steps": steps}),
                      policy=policy)
    state = run_plan(plan=plan, repo=str(repo), policy=policy, secrets=secrets, fresh=fresh,
                     sandbox=SandboxSettings(image=image), return_state=True)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, PlanRunFailed):
        assert TOKEN not in str(outcome) and PASSWORD not in str(outcome)
        return outcome.report  # type: ignore[no-any-return]
    assert isinstance(outcome, RunReport), outcome
    return outcome


ATTACKS = {  # step id → (its command, what its failure reason says, redacted)
    # host git refuses the embedded repository `$API_TOKEN/x/.git` and names it
    "plant": ('git init -q "$API_TOKEN/x"', f"embedded git repository at '{REDACTED}/x/.git'"),
    # a protected path named after the secret is named in the policy's decision
    "protect": ('echo key > "$API_TOKEN.pem"', f"protected path(s) ['{REDACTED}.pem']"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_secret_in_a_path_host_code_refuses_stays_out_of_records_report_artifacts_events_and_prefect(
        make_repo, sandbox_image: str, attack: str) -> None:  # type: ignore[no-untyped-def]
    command, said = ATTACKS[attack]
    repo = make_repo(files={"README.md": "s\n"})
    policy = ToolPolicy(secret_grants={attack: ["api-token"]}, protected_paths=["*.pem"])
    report = run_hostile(repo, sandbox_image, [
        {"id": attack, "tool": "shell", "secrets": ["api-token"], "writes_workspace": True,
         "args": {"command": command}},
    ], policy, {"api-token": SecretStr(TOKEN)})
    [step] = report.steps
    assert step.status.value == "failed" and said in (step.reason or ""), step.reason
    assert TOKEN not in report.model_dump_json()

    assert audit_and_result_files_holding(TOKEN) == []
    run_id = str(report.flow_run_id)
    log = Path(os.environ["AGENTIC_HOME"]) / "audit" / "runs" / f"{run_id}.jsonl"
    errors = [r.data["error"] for r in parse_log(log.read_bytes().splitlines()) if r.kind == "attempt_finished"]
    assert len(errors) == 1 and said in errors[0]

    expected = {"prefect-agentic.step.failed", "prefect-agentic.run.failed"}
    events = eventually(lambda: events_of(run_id), lambda found: expected <= {e["event"] for e in found}, within=60)
    assert expected <= {e["event"] for e in events}
    payloads = json.dumps([e["payload"] for e in events])
    assert said in payloads and TOKEN not in payloads

    texts = eventually(lambda: prefect_texts(run_id), lambda found: said in found["logs"], within=60)
    assert said in texts["logs"]  # the task's failure, as Prefect logged it
    assert said in texts["artifacts"]  # the summary's failures
    assert {name: TOKEN in text for name, text in texts.items()} == {"artifacts": False, "states": False,
                                                                    "logs": False}


def test_a_secret_one_step_writes_is_redacted_in_the_next_steps_output_and_diff(
        make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    # `write` is granted the secret (a Prefect Secret block) and puts it into a file; `show` and
    # `diff` are granted nothing, but print the file, copy it (their diff) and diff the run.
    Secret(value=PASSWORD).save("db-password", overwrite=True)
    repo = make_repo(files={"README.md": "s\n"})
    policy = ToolPolicy(secret_grants={"write": ["db-password"]})
    report = run_hostile(repo, sandbox_image, [
        {"id": "write", "tool": "shell", "secrets": ["db-password"], "writes_workspace": True,
         "args": {"command": 'echo "password=$DB_PASSWORD" > leaked.txt'}},
        {"id": "show", "tool": "shell", "depends_on": ["write"], "writes_workspace": True,
         "args": {"command": "cat leaked.txt; cp leaked.txt copy.txt"}},
        {"id": "diff", "tool": "git", "depends_on": ["show"], "args": {"op": "diff", "against": "@base"}},
    ], policy)
    _, show, diff = report.steps
    assert [s.status.value for s in report.steps] == ["completed"] * 3, [s.reason for s in report.steps]
    assert show.output is not None and show.output["stdout"] == f"password={REDACTED}\n"
    assert diff.output is not None and f"+password={REDACTED}" in diff.output["diff"]
    assert PASSWORD not in report.model_dump_json()
    assert audit_and_result_files_holding(PASSWORD) == []
    audit = Path(os.environ["AGENTIC_HOME"]) / "audit"
    stored = b"".join(p.read_bytes() for p in audit.rglob("*") if p.is_file())
    assert b"+++ b/copy.txt" in stored and f"+password={REDACTED}".encode() in stored  # show's diff, redacted


def test_a_resumed_run_redacts_a_secret_a_cached_step_wrote(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    # The second run takes `write` from the cache, so no step of it loads the secret: the run's
    # redactor knows it because the plan names it.
    Secret(value=PASSWORD).save("db-password", overwrite=True)
    repo = make_repo(files={"README.md": "s\n"})
    policy = ToolPolicy(secret_grants={"write": ["db-password"]})
    steps = [
        {"id": "write", "tool": "shell", "secrets": ["db-password"], "writes_workspace": True,
         "args": {"command": 'echo "password=$DB_PASSWORD" > leaked.txt'}},
        {"id": "show", "tool": "shell", "depends_on": ["write"], "args": {"command": "cat leaked.txt; exit 1"}},
    ]
    first = run_hostile(repo, sandbox_image, steps, policy)
    again = run_hostile(repo, sandbox_image, steps, policy, fresh=False)
    assert [s.status.value for s in first.steps] == ["completed", "failed"]
    assert [s.status.value for s in again.steps] == ["cached", "failed"]
    show = again.steps[1]
    assert show.output is not None and show.output["stdout"] == f"password={REDACTED}\n"
    assert PASSWORD not in again.model_dump_json()
    assert audit_and_result_files_holding(PASSWORD) == []


async def _task_run_count(flow_run_id: uuid.UUID) -> int:
    async with get_client() as client:
        return len(await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))))


async def _stored_parameters(flow_run_id: uuid.UUID) -> dict[str, Any]:
    async with get_client() as client:
        return (await client.read_flow_run(flow_run_id)).parameters


def test_a_secret_given_to_the_run_that_cannot_reach_its_steps_is_refused_before_any_step(
        make_repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # A SecretStr parameter lives only in the process it was handed to. A run started from a
    # deployment, or resumed after a suspension, reads back what Prefect stored: the mask, which a
    # step would otherwise receive as its credential. Task workers would read stored parameters too.
    repo = make_repo(files={"README.md": "s\n"})
    policy = ToolPolicy(secret_grants={"push": ["api-token"]})
    plan = parse_plan(yaml.safe_dump({"id": "given-secrets", "goal": "use a token", "steps": [
        {"id": "push", "tool": "shell", "secrets": ["api-token"], "args": {"command": 'test -n "$API_TOKEN"'}},
    ]}), policy=policy)
    first = run_plan(plan=plan, repo=str(repo), ref="no-such-ref", policy=policy,
                     secrets={"api-token": SecretStr(TOKEN)}, return_state=True)
    assert first.is_failed()
    stored = asyncio.run(_stored_parameters(first.state_details.flow_run_id))["secrets"]
    assert stored == {"api-token": SERIALIZED_MASK}  # what a deployment run or a resume is handed

    again = run_plan(plan=plan, repo=str(repo), policy=policy,
                     secrets={name: SecretStr(value) for name, value in stored.items()}, return_state=True)
    refused = again.result(raise_on_failure=False)
    assert isinstance(refused, SecretUnavailableError) and "arrived masked" in str(refused)
    assert asyncio.run(_task_run_count(again.state_details.flow_run_id)) == 0

    remote = tmp_path / "snapshots.git"
    git.Repo.init(remote, bare=True)
    monkeypatch.setenv("AGENTIC_SNAPSHOT_REMOTE", str(remote))
    on_workers = run_plan(plan=plan, repo=str(repo), policy=policy, secrets={"api-token": SecretStr(TOKEN)},
                          steps_on="task-workers", return_state=True)
    refused = on_workers.result(raise_on_failure=False)
    assert isinstance(refused, SecretUnavailableError)
    assert "cannot reach task workers" in str(refused) and "Prefect Secret block" in str(refused)
    assert asyncio.run(_task_run_count(on_workers.state_details.flow_run_id)) == 0


def test_a_dict_key_holding_a_secret_is_redacted_in_the_stored_record_and_its_event(tmp_path: Path) -> None:
    # Tools key results by names the workspace chooses (files, functions); so may any record.
    redactor = Redactor([TOKEN])
    assert redactor.data({f"{TOKEN}.txt": {TOKEN: [TOKEN]}}) == {f"{REDACTED}.txt": {REDACTED: [REDACTED]}}
    store = AuditStore(AuditStorage(filesystem=LocalFileSystem(basepath=str(tmp_path))))
    run_id = str(uuid.uuid4())
    log = AuditLog(store, run_id, [EventEmitter(RunIds(run_id, "key-run", "keys", "keys"))], redactor=redactor)
    log.record("policy_decision", {"allowed": False, "rule": "protected_paths:*.pem",
                                   "paths": {f"{TOKEN}.pem": "changed"}}, step_id="protect")
    stored = b"".join(store.read_log(run_id))
    assert TOKEN.encode() not in stored and f"{REDACTED}.pem".encode() in stored
    events = eventually(lambda: events_of(run_id), lambda found: bool(found), within=60)
    assert [e["payload"]["paths"] for e in events] == [{f"{REDACTED}.pem": "changed"}]


def test_an_error_leaves_redacted_with_its_type_and_what_callers_act_on() -> None:
    redactor = Redactor([TOKEN])
    failed = StepFailed("show", f"printed {TOKEN}", retryable=True, output={"stdout": TOKEN})
    assert redactor.exception(failed) is failed
    assert (str(failed), failed.reason, failed.output, failed.retryable) == (
        f"step 'show': printed {REDACTED}", f"printed {REDACTED}", {"stdout": REDACTED}, True)
    try:  # git's complaint chained under the tool's error
        try:
            raise OSError(f"fatal: cannot mkdir {TOKEN}/x")
        except OSError:
            raise ToolError(f"git init failed in {TOKEN}") from None
    except ToolError as exc:
        assert redactor.exception(exc) is exc
        assert TOKEN not in str(exc) and TOKEN not in str(exc.__context__)
    # an OSError keeps its file name outside its arguments: replaced by a redacted ToolError
    missing = redactor.exception(FileNotFoundError(2, "No such file", f"/w/{TOKEN}"))
    assert isinstance(missing, ToolError) and str(missing) == (
        f"FileNotFoundError: [Errno 2] No such file: '/w/{REDACTED}'")
