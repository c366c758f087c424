"""Plans run as Prefect flows: real Docker, real git, a real Prefect API."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import EXAMPLES
from prefect.client.orchestration import get_client

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.concurrency import forget_limit_names
from prefect_agentic.errors import PlanRunFailed
from prefect_agentic.flows.run_plan import RunReport, run_plan
from prefect_agentic.plan import load_plan, parse_plan
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.workspace import mounted

pytestmark = pytest.mark.usefixtures("prefect_api")


def run(plan_text_or_path, repo: Path, image: str, **kwargs) -> RunReport:  # type: ignore[no-untyped-def]
    plan = load_plan(plan_text_or_path) if isinstance(plan_text_or_path, Path) else parse_plan(plan_text_or_path)
    settings = kwargs.pop("sandbox", SandboxSettings(image=image))
    state = run_plan(plan=plan, repo=str(repo), sandbox=settings, return_state=True, **kwargs)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, PlanRunFailed):
        return outcome.report  # type: ignore[return-value]
    assert isinstance(outcome, RunReport), outcome
    return outcome


def statuses(report: RunReport) -> dict[str, str]:
    return {s.step_id: s.status.value for s in report.steps}


def show(repo_or_ws: str, rev_path: str) -> str:
    return subprocess.run(["git", "show", rev_path], cwd=repo_or_ws, capture_output=True,
                          text=True, check=True).stdout


def test_demo_plan_fixes_lint_and_keeps_the_tests_green(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(example="demo")
    report = run(EXAMPLES / "plans" / "fix-lint-demo.yaml", repo, sandbox_image)
    assert report.ok, report
    assert statuses(report) == {"lint": "completed", "fix": "completed", "tests": "completed"}
    lint, fix, tests = report.steps
    assert lint.output["by_rule"] == {"F401": 2, "F541": 2, "I001": 1}
    assert fix.output["lint_violations"] == 0
    assert fix.diff_stat == "1 files, +2 -4"
    assert tests.output["passed"] == 4 and tests.output["tests_failed"] == 0
    assert report.final_snapshot == fix.snapshot != report.base_snapshot
    with mounted(Path(report.workspace)):  # the run unmounted its workspace when it ended
        fixed = show(report.workspace, f"{report.final_snapshot}:demo/calc.py")
    assert "import sys" not in fixed and 'ValueError("mean of nothing")' in fixed
    assert "import sys" in (repo / "demo" / "calc.py").read_text()  # the user's tree is untouched


def test_a_second_run_takes_every_step_from_the_cache(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(example="demo")
    first = run(EXAMPLES / "plans" / "fix-lint-demo.yaml", repo, sandbox_image)
    second = run(EXAMPLES / "plans" / "fix-lint-demo.yaml", repo, sandbox_image)
    assert statuses(second) == {"lint": "cached", "fix": "cached", "tests": "cached"}
    assert second.final_snapshot == first.final_snapshot
    fresh = run(EXAMPLES / "plans" / "fix-lint-demo.yaml", repo, sandbox_image, fresh=True)
    assert statuses(fresh) == {"lint": "completed", "fix": "completed", "tests": "completed"}
    assert fresh.final_snapshot == first.final_snapshot


def _flow_run_name_and_task_tags(report: RunReport) -> tuple[str, dict[str, set[str]]]:
    import asyncio

    async def read() -> tuple[str, dict[str, set[str]]]:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        async with get_client() as client:
            flow_run = await client.read_flow_run(report.flow_run_id)
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
        return flow_run.name, {t.name: set(t.tags) for t in task_runs}

    return asyncio.run(read())


def test_flow_run_is_named_after_plan_and_goal_and_steps_are_tagged_only_under_a_tag_limit(  # type: ignore[no-untyped-def]
        make_repo, sandbox_image: str) -> None:
    """Untagged steps skip the task engine's slot call (a 2 s stall on SQLite); a tag limit still holds."""
    name, tasks = _flow_run_name_and_task_tags(
        run(EXAMPLES / "plans" / "fix-lint-demo.yaml", make_repo(example="demo"), sandbox_image))
    assert name == "fix-lint-demo v1: Make ruff pass on the demo package"
    assert set(tasks) == {"lint", "fix", "tests"}
    assert tasks["fix"] == set()

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name("tag:tool:ruff", 4)
    forget_limit_names()  # the answer of the run before is kept 5 s
    try:
        _, tasks = _flow_run_name_and_task_tags(
            run(EXAMPLES / "plans" / "fix-lint-demo.yaml", make_repo(example="demo", name="limited"),
                sandbox_image))
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name("tag:tool:ruff")
        forget_limit_names()
    assert tasks["fix"] == {"plan:fix-lint-demo", "tool:ruff"}
    assert tasks["tests"] == set()  # its tool (pytest) and its plan have no limit


def test_a_failed_step_leaves_its_dependents_not_run(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    report = run("""
id: fails
goal: stop at the broken step
steps:
  - {id: ok, tool: shell, args: {command: "true"}}
  - {id: broken, tool: shell, args: {command: "echo nope; exit 3"}, depends_on: [ok]}
  - {id: after, tool: shell, args: {command: "true"}, depends_on: [broken]}
  - {id: sibling, tool: shell, args: {command: "true"}, depends_on: [ok]}
""", make_repo({"f": "x"}), sandbox_image)
    assert not report.ok
    assert statuses(report) == {"ok": "completed", "broken": "failed", "after": "not_run",
                                "sibling": "completed"}
    broken = report.steps[1]
    assert broken.reason and "exit code 3, expected 0" in broken.reason and "nope" in broken.reason


def test_unmet_outcomes_are_retried_until_they_are_met(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    report = run("""
id: flaky
goal: succeed on the third attempt
steps:
  - id: flaky
    tool: shell
    args: {command: 'test "$AGENTIC_STEP_ATTEMPT" -ge 3'}
    retries: 3
    retry_backoff_seconds: 0
""", make_repo({"f": "x"}), sandbox_image)
    assert statuses(report) == {"flaky": "completed"}
    assert report.steps[0].attempts == 3


def test_retries_run_out(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    report = run("""
id: hopeless
goal: never succeed
steps:
  - {id: never, tool: shell, args: {command: "exit 1"}, retries: 2, retry_backoff_seconds: 0}
""", make_repo({"f": "x"}), sandbox_image)
    assert statuses(report) == {"never": "failed"}
    assert report.steps[0].attempts == 3


def test_a_broken_guard_fails_at_once_without_retrying(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    report = run("""
id: guarded
goal: a step that touches a protected file
steps:
  - id: edit
    tool: shell
    args: {command: "echo changed >> tests/test_x.py"}
    writes_workspace: true
    retries: 3
    retry_backoff_seconds: 0
    success: {unchanged_paths: ["tests/"]}
""", make_repo({"tests/test_x.py": "x = 1\n"}), sandbox_image)
    assert statuses(report) == {"edit": "failed"}
    assert report.steps[0].attempts == 1
    assert "changed protected path(s) ['tests/test_x.py']" in (report.steps[0].reason or "")


def test_a_step_past_its_timeout_is_killed_and_fails(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    report = run("""
id: slow
goal: run too long
steps:
  - {id: slow, tool: shell, args: {command: "sleep 120"}, timeout_seconds: 2}
""", make_repo({"f": "x"}), sandbox_image)
    assert statuses(report) == {"slow": "failed"}
    assert "exceeded the step timeout of 2s" in (report.steps[0].reason or "")


def test_independent_steps_run_in_parallel(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    step = '{{id: p{n}, tool: shell, args: {{command: "date +%s.%N; sleep 2; date +%s.%N"}}}}'
    plan = "id: parallel\ngoal: four at once\nsteps:\n" + "".join(
        f"  - {step.format(n=n)}\n" for n in range(4))
    report = run(plan, make_repo({"f": "x"}), sandbox_image,
                 sandbox=SandboxSettings(image=sandbox_image, mode="warm"))
    spans = [tuple(map(float, s.output["stdout"].split())) for s in report.steps]
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans


def test_steps_with_a_writer_between_them_see_its_snapshot(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    report = run("""
id: chain
goal: write, read, write, read
steps:
  - {id: w1, tool: shell, args: {command: "echo one > f"}, writes_workspace: true}
  - {id: r1, tool: shell, args: {command: "cat f"}, depends_on: [w1]}
  - {id: r2, tool: shell, args: {command: "cat f"}, depends_on: [w1]}
  - {id: w2, tool: shell, args: {command: "echo two >> f"}, depends_on: [r1, r2], writes_workspace: true}
  - {id: r3, tool: shell, args: {command: "cat f"}, depends_on: [w2]}
""", make_repo({"f": "zero\n"}), sandbox_image)
    out = {s.step_id: s.output["stdout"] for s in report.steps}
    assert out["r1"] == out["r2"] == "one\n"
    assert out["r3"] == "one\ntwo\n"


def test_output_that_breaks_the_tool_contract_fails_only_that_step(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    from pydantic import Field

    from prefect_agentic.tools.base import Tool, ToolInput, ToolOutput

    class CountOutput(ToolOutput):
        count: int = Field(ge=0)

    class CountTool(Tool):
        name = "count-lines"
        version = "0.1.0"
        description = "Counts lines, badly."
        Input = ToolInput
        Output = CountOutput

        def run(self, args, ctx):  # type: ignore[no-untyped-def]
            result = ctx.run(["sh", "-c", "echo -3"])
            return {"exit_code": result.exit_code, "count": int(result.stdout)}

    default_registry().register(CountTool)
    try:
        report = run("""
id: contract
goal: a tool that lies about its output
steps:
  - {id: count, tool: count-lines}
  - {id: other, tool: shell, args: {command: "true"}}
""", make_repo({"f": "x"}), sandbox_image)
    finally:  # later tests in this process (e.g. the list of known tools) see only the built-ins
        default_registry().unregister(CountTool.name)
    assert statuses(report) == {"count": "failed", "other": "completed"}
    assert "tool 'count-lines' v0.1.0 produced output that does not fit its output model: " \
           "count: Input should be greater than or equal to 0" in (report.steps[0].reason or "")
