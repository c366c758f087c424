"""The ``change_request`` tool: title, body and risk of a change, filed as a pull request.

The body is made from facts of the run workspace: the diff stat of HEAD
against the base branch (host-side git), the test results of HEAD (pytest in
the sandbox, without the step's secrets: the tests are the repository's
code, the token is not theirs to see), and a risk summary derived from both.
The ``local`` backend only writes the change request (the step's output and
``change-request.md`` in its report directory), for a remote without a
pull-request API such as a bare repository; ``github`` opens (or updates) the
pull request through GitHub's REST API with a token from a step secret.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from git import GitCommandError
from pydantic import Field, model_validator

from prefect_agentic.errors import ToolError
from prefect_agentic.github import GitHubClient
from prefect_agentic.secrets import Redactor
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.tools.pytest import PytestOutput, PytestTool
from prefect_agentic.workspace import ChangeSummary, Workspace, run_git

LARGE_CHANGE_LINES = 400
_CI = re.compile(r"^(\.github/|\.gitlab-ci\.yml$|\.circleci/|Jenkinsfile$|\.pre-commit-config\.yaml$)")
_DEPENDENCIES = re.compile(r"(^|/)(pyproject\.toml|setup\.py|setup\.cfg|requirements[^/]*\.txt|"
                           r"[^/]*\.lock|package(-lock)?\.json|Pipfile)$")
_TESTS = re.compile(r"(^|/)(tests?/|test_[^/]*\.py$|[^/]*_test\.py$|conftest\.py$)")
_LEVELS = ("low", "medium", "high")


class ChangeRequestInput(ToolInput):
    head: str = Field(min_length=1, description="The pushed branch the change request proposes.")
    base: str = Field(default="main", min_length=1, description="The branch it is proposed for.")
    title: str | None = Field(default=None, description="Default: the subject of HEAD's commit.")
    summary: str | None = Field(default=None, description="Opening text of the body; default: the "
                                "subjects of the commits since the base.")
    test_paths: list[str] = Field(default_factory=list, description="Tests to report (default: pytest's).")
    backend: Literal["local", "github"] = "local"
    repository: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
                                   description="github: owner/name.")
    api_url: str = Field(default="https://api.github.com", description="github: the REST API's base URL.")
    token_secret: str = Field(default="github-token", description="github: the step secret with the token.")
    draft: bool = False

    @model_validator(mode="after")
    def _github_needs_repository(self) -> ChangeRequestInput:
        if self.backend == "github" and not self.repository:
            raise ValueError("backend 'github' needs repository (owner/name)")
        return self


class ChangeRequestOutput(ToolOutput):
    backend: str
    title: str
    body: str
    head: str
    base: str
    head_commit: str
    base_commit: str = Field(description="Where HEAD left the base branch (their merge base).")
    number: int | None = Field(default=None, description="github: the pull request's number.")
    url: str | None = Field(default=None, description="github: the pull request's page.")
    created: bool = Field(default=False, description="github: false when an open one was updated.")
    diff_stat: str
    passed: int
    failed: int
    errors: int
    skipped: int
    tests_failed: int = Field(description="failed + errors at HEAD; gate on it with tests_failed.")
    failing_tests: list[str] = Field(default_factory=list)
    risk: Literal["low", "medium", "high"]
    risk_reasons: list[str]


class ChangeRequestTool(Tool):
    """Write a change request for HEAD and file it (GitHub) or keep it (local)."""

    name: ClassVar[str] = "change_request"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Write a change request (diff stat, test results, risk); open it on GitHub."
    Input: ClassVar[type[ToolInput]] = ChangeRequestInput
    Output: ClassVar[type[ToolOutput]] = ChangeRequestOutput

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "open"

    def run(self, args: ChangeRequestInput, ctx: ToolContext) -> Mapping[str, Any]:
        head = _git(ctx, "rev-parse", "HEAD")
        base = _git(ctx, "merge-base", _base_ref(ctx, args.base), head)
        changes = Workspace(ctx.workspace).changes(base, head)
        tests = _test_results(args, ctx)
        risk, reasons = assess_risk(changes, tests)
        title = args.title or _git(ctx, "show", "-s", "--format=%s", head)
        summary = args.summary or "\n".join(
            f"- {s}" for s in _git(ctx, "log", "--reverse", "--format=%s", f"{base}..{head}").splitlines())
        body = render_body(summary, changes, tests, risk, reasons, base=args.base, base_commit=base,
                           head_commit=head)
        found: dict[str, Any] = {
            "exit_code": 0, "backend": args.backend, "title": title, "body": body, "head": args.head,
            "base": args.base, "head_commit": head, "base_commit": base, "diff_stat": changes.stat_line(),
            "risk": risk, "risk_reasons": reasons,
            **{k: getattr(tests, k) for k in ("passed", "failed", "errors", "skipped", "tests_failed",
                                              "failing_tests")},
        }
        ctx.reports.write_text("change-request.md", f"# {title}\n\n{body}")
        if args.backend == "github":
            found.update(_open_on_github(args, ctx, title, body))
        where = f"#{found['number']} {found['url']}" if args.backend == "github" else "written"
        found["log"] = f"change request {where}: {title} (risk {risk})"
        return found


def _git(ctx: ToolContext, *args: str) -> str:
    try:
        return run_git(ctx.workspace, *args)
    except GitCommandError as exc:
        raise ToolError(f"git {args[0]} failed: {exc.stderr.strip() or exc}") from None


def _base_ref(ctx: ToolContext, base: str) -> str:
    """The base branch as the run workspace knows it: the source repository's, else a local one."""
    for ref in (f"refs/remotes/origin/{base}", f"refs/heads/{base}"):
        try:
            run_git(ctx.workspace, "rev-parse", "--verify", "--quiet", ref)
            return ref
        except GitCommandError:
            continue
    raise ToolError(f"base branch '{base}' is not in the run workspace (neither origin/{base} nor {base})")


def _test_results(args: ChangeRequestInput, ctx: ToolContext) -> PytestOutput:
    """pytest at HEAD in the sandbox, with none of the step's secrets in its environment."""
    without_secrets = dataclasses.replace(ctx, env={})
    output = PytestTool().invoke({"paths": args.test_paths}, without_secrets)
    assert isinstance(output, PytestOutput)
    return output


def assess_risk(changes: ChangeSummary, tests: PytestOutput) -> tuple[str, list[str]]:
    """A level (low, medium, high) and its reasons, from the change and the test results."""
    found: list[tuple[int, str]] = []
    if tests.tests_failed:
        shown = ", ".join(tests.failing_tests[:5])
        found.append((2, f"{tests.tests_failed} failing test(s): {shown}"))
    paths = [f.path for f in changes.files]
    if ci := [p for p in paths if _CI.search(p)]:
        found.append((2, f"changes CI configuration: {', '.join(ci)}"))
    if deps := [p for p in paths if _DEPENDENCIES.search(p)]:
        found.append((1, f"changes dependencies or packaging: {', '.join(deps)}"))
    if changes.lines_changed > LARGE_CHANGE_LINES:
        found.append((1, f"large change: {changes.lines_changed} lines"))
    if binary := [f.path for f in changes.files if f.binary]:
        found.append((1, f"binary files: {', '.join(binary)}"))
    code = [p for p in paths if p.endswith(".py") and not _TESTS.search(p)]
    if code and not any(_TESTS.search(p) for p in paths):
        found.append((1, "changes code without changing tests"))
    if not found:
        return "low", [f"{changes.stat_line()}, tests green"]
    return _LEVELS[max(level for level, _ in found)], [reason for _, reason in found]


def render_body(summary: str, changes: ChangeSummary, tests: PytestOutput, risk: str,
                reasons: list[str], *, base: str, base_commit: str, head_commit: str) -> str:
    """The change request's body in Markdown."""
    rows = "\n".join(f"| `{f.path}` | {'binary' if f.binary else f'+{f.added} -{f.deleted}'} |"
                     for f in changes.files)
    failing = "".join(f"\n- `{t}`" for t in tests.failing_tests)
    return (
        f"{summary}\n\n"
        f"## Changes\n\n{changes.stat_line()} against `{base}` ({base_commit[:12]}..{head_commit[:12]})\n\n"
        f"| file | lines |\n|---|---|\n{rows}\n\n"
        f"## Tests\n\n{tests.passed} passed, {tests.failed} failed, {tests.errors} errors, "
        f"{tests.skipped} skipped (pytest at {head_commit[:12]}){failing}\n\n"
        f"## Risk: {risk}\n\n" + "\n".join(f"- {r}" for r in reasons) + "\n"
    )


def _open_on_github(args: ChangeRequestInput, ctx: ToolContext, title: str, body: str) -> dict[str, Any]:
    token = ctx.secret(args.token_secret)
    try:
        with GitHubClient(args.api_url, args.repository or "", token) as github:
            pull = github.open_pull_request(title=title, body=body, head=args.head, base=args.base,
                                            draft=args.draft)
    except ToolError as exc:
        raise type(exc)(Redactor([token]).text(str(exc))) from None
    return {"number": pull.number, "url": pull.url, "created": pull.created}
