"""`agentic validate`: every problem in one report, with lines and "did you mean"; known failures.

The known-failure check is tested against real git: the commit step a plan is
rejected for really finds nothing to commit when run the way the executor runs
it (a clean checkout of its snapshot), and the accepted form really commits.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from conftest import agentic_cli

from prefect_agentic.errors import PlanError, ToolError
from prefect_agentic.plan import load_plan, parse_plan
from prefect_agentic.plan.graph import snapshot_sources, topological_order
from prefect_agentic.plan.models import Plan
from prefect_agentic.tools.base import ToolContext
from prefect_agentic.tools.git import GitTool
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.workspace import Workspace, resolve_base

SEVEN_MISTAKES = """\
id: seven-mistakes
goal: one file, seven mistakes
steps:
  - id: lint
    tool: rufff
    args: {mode: check}
  - id: fix
    tool: ruff
    args: {mode: fix, selct: [F]}
    writes_workspace: true
    depends_on: [lint]
  - id: tests
    tool: pytest
    depends_on: [fixx]
    success: {test_failed: 0}
    timeout_seconds: -3
  - id: status
    tool: git
    args: {op: stauts}
    depends_on: [tests]
  - id: commit
    tool: git
    args: {op: commit, message: done}
    writes_workspace: true
    requires_approval: true
    depends_on: [fix, tests, status]
"""


def test_seven_mistakes_are_one_report_in_file_order_with_lines_and_suggestions(tmp_path: Path) -> None:
    plan_file = tmp_path / "seven.yaml"
    plan_file.write_text(SEVEN_MISTAKES)
    result = agentic_cli("validate", str(plan_file), "--json")
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert list(zip(report["lines"], report["problems"])) == [
        (5, ("steps[0] 'lint'.tool: unknown tool 'rufff'; did you mean 'ruff'? (known tools: "
            + ", ".join(default_registry().names()) + ")")),
        (9, "steps[1] 'fix'.args.selct: unknown argument; did you mean 'select'? (tool 'ruff')"),
        (14, "steps[2] 'tests'.depends_on: unknown step 'fixx'; did you mean 'fix'?"),
        (15, ("steps[2] 'tests'.success.test_failed: unknown field (check its spelling); "
             "did you mean 'tests_failed'?")),
        (16, "steps[2] 'tests'.timeout_seconds: Input should be greater than 0"),
        (19, ("steps[3] 'status'.args.op: Input should be 'status', 'diff', 'branch', 'commit' or 'push'; "
             "did you mean 'status'? (tool 'git')")),
        (23, ("steps[4] 'commit'.args.onto: cannot succeed: a commit onto HEAD always finds nothing to "
             "commit: the step starts from a clean checkout of its snapshot, so its worktree equals "
             "HEAD; use onto: '@base' to commit the changes of the steps it depends on (it is gated: "
             "approvers would be asked to approve a step that cannot succeed)")),
    ]
    with pytest.raises(PlanError) as caught:
        load_plan(plan_file)
    assert "invalid plan (7 problems)" in str(caught.value)
    assert "\n  - line 5: steps[0] 'lint'.tool: unknown tool 'rufff'; did you mean 'ruff'?" in str(caught.value)


def _fixed(text: str) -> str:
    for wrong, right in [("rufff", "ruff"), ("selct", "select"), ("fixx", "fix"), ("test_failed", "tests_failed"),
                         ("-3", "30"), ("stauts", "status"),
                         ("{op: commit, message: done}", "{op: commit, message: done, onto: '@base'}")]:
        text = text.replace(wrong, right)
    return text


def test_fixing_what_the_report_says_leaves_no_second_round(tmp_path: Path) -> None:
    plan_file = tmp_path / "seven.yaml"
    plan_file.write_text(_fixed(SEVEN_MISTAKES))
    assert len(load_plan(plan_file).steps) == 5


@pytest.mark.parametrize(("step", "writes", "problem"), [
    ({"id": "save", "tool": "git", "args": {"op": "commit", "message": "m"}, "writes_workspace": True,
      "depends_on": ["write"]}, True, "steps[1] 'save'.args.onto: cannot succeed: a commit onto HEAD"),
    ({"id": "save", "tool": "git", "args": {"op": "commit", "message": "m", "onto": "@base"},
      "writes_workspace": True, "depends_on": ["write"]}, False,
     ("steps[1] 'save'.depends_on: cannot succeed: a commit onto '@base' would find nothing to commit: "
     "no step it depends on")),
])
def test_a_commit_that_cannot_find_changes_is_rejected(step: dict[str, object], writes: bool,
                                                       problem: str) -> None:
    """A commit onto HEAD after a writer; a commit onto the base after a step that only reads."""
    with pytest.raises(PlanError) as caught:
        parse_plan(_plan_text(step, writes))
    assert len(caught.value.problems) == 1 and caught.value.problems[0].startswith(problem), caught.value.problems


def _plan_text(commit: dict[str, object], writes: bool = True) -> str:
    write = {"id": "write", "tool": "shell", "args": {"command": "echo new > new.txt"}, "writes_workspace": True}
    if not writes:
        write = {"id": "write", "tool": "shell", "args": {"command": "true"}}
    return yaml.safe_dump({"id": "save-work", "goal": "write, then commit", "steps": [write, commit]})


ACCEPTED = {"id": "save", "tool": "git", "args": {"op": "commit", "message": "m", "onto": "@base"},
            "writes_workspace": True, "requires_approval": True, "depends_on": ["write"]}
REJECTED = {**ACCEPTED, "args": {"op": "commit", "message": "m"}}


def _run_like_the_executor(plan: Plan, repo: Path, tmp_path: Path) -> object:
    """Each step at a clean checkout of its snapshot, as the executor runs it; the writer writes
    what its shell command would; the git step is the real tool on the real workspace."""
    base = resolve_base(repo, "HEAD")
    workspace = Workspace.prepare(repo, base, tmp_path / "workspace")
    sources, snapshots = snapshot_sources(plan.steps), {}
    output = None
    for step_id in topological_order(plan.steps):
        step = plan.step(step_id)
        start = snapshots[sources[step_id]] if sources[step_id] else base
        with workspace.checkout(start, exclusive=step.writes_workspace) as path:
            if step.tool == "shell":
                (path / "new.txt").write_text("new\n")
            else:
                ctx = ToolContext(sandbox=None, workspace=path, reports_path=".agentic/reports/save",  # type: ignore[arg-type]
                                  step_id=step.id, base_snapshot=base, attempt=1, timeout_seconds=30)
                output = GitTool().invoke(step.args, ctx)
            snapshots[step_id] = workspace.snapshot(f"snapshot {step_id}", f"t/{step_id}")
    return output


def test_the_rejected_commit_really_fails_and_the_accepted_one_commits(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"README.md": "x\n"})
    with pytest.raises(PlanError):
        parse_plan(_plan_text(REJECTED))
    rejected = Plan.model_validate(yaml.safe_load(_plan_text(REJECTED)))
    with pytest.raises(ToolError, match="nothing to commit"):
        _run_like_the_executor(rejected, repo, tmp_path / "rejected")

    accepted = parse_plan(_plan_text(ACCEPTED))
    output = _run_like_the_executor(accepted, repo, tmp_path / "accepted")
    assert output.commit and output.changed_files == []  # type: ignore[attr-defined]


VALID = """\
id: fuzz
goal: a plan to break
steps:
  - {id: lint, tool: ruff, args: {mode: check}}
  - {id: fix, tool: ruff, args: {mode: fix}, writes_workspace: true, depends_on: [lint],
     success: {lint_violations: 0, max_changed_lines: 50}, retries: 2}
  - {id: tests, tool: pytest, args: {paths: [tests]}, depends_on: [fix], success: {tests_failed: 0}}
  - {id: save, tool: git, args: {op: commit, message: fix lint, onto: "@base"}, writes_workspace: true,
     depends_on: [tests], requires_approval: true}
"""
ODD_VALUES: list[object] = [None, 0, -1, 1.5, True, "", "x" * 100, [], [None], {}, {"": 1}, {"a": [1]}, "@base",
                            "HEAD", ["lint", "lint"], "steps", {1: 2}]


def _mutations(data: object, rng: random.Random) -> object:
    """``data`` with one random part replaced, removed or renamed."""
    if isinstance(data, dict) and data:
        key = rng.choice(list(data))
        roll = rng.random()
        if roll < 0.3:
            return {k: v for k, v in data.items() if k != key}
        if roll < 0.45:
            return {(k + "s" if k == key and isinstance(k, str) else k): v for k, v in data.items()}
        if roll < 0.7:
            return {**data, key: rng.choice(ODD_VALUES)}
        return {**data, key: _mutations(data[key], rng)}
    if isinstance(data, list) and data:
        index = rng.randrange(len(data))
        copy = list(data)
        copy[index] = _mutations(copy[index], rng) if rng.random() < 0.7 else rng.choice(ODD_VALUES)
        return copy
    return rng.choice(ODD_VALUES)


def test_no_broken_plan_makes_a_traceback() -> None:
    rng = random.Random(13)
    base = yaml.safe_load(VALID)
    assert parse_plan(VALID).id == "fuzz"
    rejected = 0
    for _ in range(400):
        data = base
        for _ in range(rng.randint(1, 4)):
            data = _mutations(data, rng)
        try:
            parse_plan(yaml.safe_dump(data))
        except PlanError as exc:
            rejected += 1
            assert exc.problems and all(isinstance(p, str) and ": " in p for p in exc.problems)
    assert rejected > 300


def test_a_file_that_is_not_a_plan_is_a_plan_error(tmp_path: Path) -> None:
    binary = tmp_path / "plan.yaml"
    binary.write_bytes(b"id: x\n\xff\xfe\x00goal")
    with pytest.raises(PlanError, match=r"line 2: the file is not UTF-8 text \(byte 0xff at offset 6\)"):
        load_plan(binary)
    with pytest.raises(PlanError, match="cannot read the file"):
        load_plan(tmp_path)
