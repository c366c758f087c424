"""propose_patch: real Docker, real git, a real Prefect API for the endpoint block, and a
scripted chat-completions server on 127.0.0.1 standing in for the model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from llm_server import API_KEY, ListRecorder
from pydantic import SecretStr

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.errors import PlanError, PlanRunFailed
from prefect_agentic.flows.run_plan import RunReport, run_plan
from prefect_agentic.plan import parse_plan
from prefect_agentic.tools.propose_patch import rejection
from prefect_agentic.workspace import mounted

BUGGY = {
    "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["."]\n',
    "demo/__init__.py": "",
    "demo/calc.py": "def mean(values):\n    return sum(values) / (len(values) + 1)\n",
    "tests/test_calc.py": "from demo.calc import mean\n\n\ndef test_mean():\n    assert mean([1, 2, 3]) == 2\n",
}
GOOD_DIFF = """\
--- a/demo/calc.py
+++ b/demo/calc.py
@@ -1,2 +1,2 @@
 def mean(values):
-    return sum(values) / (len(values) + 1)
+    return sum(values) / len(values)
"""
STALE_DIFF = GOOD_DIFF.replace(" def mean(values):", " def average(values):")
PLAN = """
id: patch-mean
goal: Fix mean
steps:
  - id: patch
    tool: propose_patch
    writes_workspace: true
    args:
      instruction: mean() divides by one too many; fix it
      files: [demo/calc.py, tests/test_calc.py]
      endpoint: scripted-llm
      attempts: 2
  - {id: tests, tool: pytest, depends_on: [patch], success: {tests_failed: 0}}
"""


@pytest.fixture
def endpoint_block(llm_server, prefect_api) -> str:  # type: ignore[no-untyped-def]
    LLMEndpoint(base_url=llm_server.base_url, model="scripted-1", api_key=SecretStr(API_KEY),
                prompt_price_per_1k=1.0, completion_price_per_1k=2.0).save("scripted-llm", overwrite=True)
    return "scripted-llm"


def run(repo: Path, image: str) -> RunReport:
    state = run_plan(plan=parse_plan(PLAN), repo=str(repo), sandbox=SandboxSettings(image=image),
                     return_state=True)
    outcome = state.result(raise_on_failure=False)
    return outcome.report if isinstance(outcome, PlanRunFailed) else outcome  # type: ignore[return-value]


def test_a_diff_that_does_not_apply_goes_back_and_the_next_one_is_applied(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server, endpoint_block) -> None:
    llm_server.reply({"summary": "guess", "diff": STALE_DIFF})
    llm_server.reply({"summary": "divide by the count", "diff": GOOD_DIFF.rstrip("\n")})
    repo = make_repo(BUGGY)
    report = run(repo, sandbox_image)
    assert report.ok, report
    patch, tests = report.steps
    assert patch.output["summary"] == "divide by the count" and patch.output["answers"] == 2
    assert patch.output["files_changed"] == ["demo/calc.py"]
    assert (patch.output["lines_added"], patch.output["lines_deleted"]) == (1, 1)
    assert patch.output["cost"] > 0 and patch.diff_stat == "1 files, +1 -1"
    assert tests.output["passed"] == 1
    with mounted(Path(report.workspace)):  # the run unmounted its workspace when it ended
        fixed = subprocess.run(["git", "show", f"{patch.snapshot}:demo/calc.py"], cwd=report.workspace,
                               capture_output=True, text=True, check=True).stdout
    assert "return sum(values) / len(values)" in fixed
    first_request = llm_server.user_messages(0)[0]
    assert "mean() divides by one too many" in first_request and "def test_mean" in first_request
    feedback = llm_server.user_messages(1)[-1]
    assert "hunk @@ -1,2 +1,2 @@ in demo/calc.py does not apply" in feedback
    assert "expected 'def average(values):'" in feedback


def test_a_patch_that_never_applies_fails_the_step_naming_the_hunk(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server, endpoint_block) -> None:
    llm_server.reply({"summary": "s", "diff": STALE_DIFF}).reply({"summary": "s", "diff": STALE_DIFF})
    report = run(make_repo(BUGGY), sandbox_image)
    patch, tests = report.steps
    assert (patch.status.value, tests.status.value) == ("failed", "not_run")
    assert patch.reason.startswith("no proposed patch applied in 2 answer(s); last: hunk "
                                   "@@ -1,2 +1,2 @@ in demo/calc.py does not apply")
    assert len(llm_server.seen) == 2
    assert report.final_snapshot == report.base_snapshot


def test_the_model_calls_are_charged_to_the_run_recorder(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server, endpoint_block, tmp_path) -> None:
    from prefect_agentic.executor import RunContext, execute_step, run_resources
    from prefect_agentic.workspace import Workspace, resolve_base

    llm_server.reply({"summary": "fix", "diff": GOOD_DIFF})
    repo = make_repo(BUGGY)
    base = resolve_base(repo, "HEAD")
    settings = SandboxSettings(image=sandbox_image)
    ws = Workspace.prepare(repo, base, tmp_path / "ws", settings.workspace_owner())
    run_ctx = RunContext(run_key="patch-budget", plan_id="p", workspace=ws.path,
                         workspace_epoch=ws.epoch, base_snapshot=base, sandbox=settings)
    recorder = ListRecorder()
    run_resources(run_ctx).recorder = recorder
    result = execute_step(parse_plan(PLAN).step("patch"), run_ctx, base, 1)
    [charge] = recorder.of("budget")
    assert charge["purpose"] == "patch" and charge["model"] == "scripted-1"
    assert charge["prompt_tokens"] == llm_server.seen[0].usage["prompt_tokens"]
    assert charge["cost"] == result.output["cost"] > 0


def test_a_file_a_step_turned_into_a_link_to_the_host_never_reaches_the_model(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image, llm_server, endpoint_block, tmp_path) -> None:
    """The workspace is hostile: the host reads the files it sends through the boundary, never a link."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host-only-token-5f1c\n")
    plan = PLAN.replace("steps:\n", f"""steps:
  - id: plant
    tool: shell
    writes_workspace: true
    args: {{command: 'ln -sf {secret} demo/calc.py'}}
""", 1).replace("  - id: patch\n    tool: propose_patch\n", "  - id: patch\n    tool: propose_patch\n"
                "    depends_on: [plant]\n", 1)
    llm_server.reply({"summary": "fix", "diff": GOOD_DIFF})
    state = run_plan(plan=parse_plan(plan), repo=str(make_repo(BUGGY)), sandbox=SandboxSettings(image=sandbox_image),
                     return_state=True)
    report = state.result(raise_on_failure=False).report
    plant, patch, _ = report.steps
    assert (plant.status.value, patch.status.value) == ("completed", "failed")
    assert "file 'demo/calc.py' is outside the workspace" in (patch.reason or "")
    assert llm_server.seen == []  # nothing was asked, so nothing of the host was sent
    assert "host-only-token-5f1c" not in report.model_dump_json()


def test_propose_patch_steps_must_write_the_workspace() -> None:
    with pytest.raises(PlanError, match=r"steps\[0\] 'patch'.writes_workspace: this 'propose_patch' call changes files"):
        parse_plan(PLAN.replace("    writes_workspace: true\n", ""))
    with pytest.raises(PlanError, match=r"args.files: Value error, '../etc/passwd' must be a path inside"):
        parse_plan(PLAN.replace("[demo/calc.py, tests/test_calc.py]", "[../etc/passwd]"))


def test_rejection_names_the_hunk_from_gits_message() -> None:
    git_error = ("Checking patch demo/calc.py...\nerror: while searching for:\ndef average(values):\n"
                 "\nerror: patch failed: demo/calc.py:1\nerror: demo/calc.py: patch does not apply\n")
    assert rejection(STALE_DIFF, git_error) == (
        "hunk @@ -1,2 +1,2 @@ in demo/calc.py does not apply: the file has no lines matching its "
        "context (expected 'def average(values):' / '') ; git apply: patch failed: demo/calc.py:1; "
        "demo/calc.py: patch does not apply").replace(" ;", ";")
    assert rejection("garbage\n", "error: No valid patches in input (allow with \"--allow-empty\")\n") == (
        'the diff does not apply; git apply: No valid patches in input (allow with "--allow-empty")')
