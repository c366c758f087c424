"""The recipe planner: deterministic plans for common engineering tasks.

A recipe is a goal template with typed parameters (a pydantic model) that
builds a complete plan, no network and no model involved, so the same
parameters always give the same plan. Every plan it makes names the planner,
its version and the recipe with its parameters (``plan.planner``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from prefect_agentic.errors import AgenticError
from prefect_agentic.plan.models import Plan, PlannerInfo
from prefect_agentic.plan.validation import check_plan

PLANNER_NAME = "recipes"
PLANNER_VERSION = "1.0.0"


class RecipeError(AgenticError):
    """A recipe name or parameter is wrong; the message names it."""


class RecipeParams(BaseModel):
    """Base of recipe parameters: unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid")


class FixLintParams(RecipeParams):
    paths: list[str] = Field(default_factory=lambda: ["."], description="Files and directories to lint.")
    select: list[str] = Field(default_factory=list, description="Rules to fix (default: the project's ruff config).")
    test_paths: list[str] = Field(default_factory=list, description="Tests that must stay green (default: pytest's).")
    branch: str = Field(default="agentic/fix-lint", description="Branch the fix is committed on.")
    max_changed_lines: int = Field(default=500, ge=1, description="Guard: the fix may change at most this many lines.")


class TestAndReportParams(RecipeParams):
    paths: list[str] = Field(default_factory=list, description="Test paths (default: pytest's).")
    keyword: str | None = Field(default=None, description="Only tests matching this -k expression.")
    max_failures: int = Field(default=0, ge=0, description="The run succeeds with at most this many failing tests.")


class TriageFailureParams(RecipeParams):
    test: str = Field(description="Node id of the failing test (tests/test_x.py::test_y).")
    good: str = Field(description="A commit or ref where the test passed.")
    bad: str = Field(default="HEAD", description="A commit where it fails (default: the run's starting commit).")
    timeout_seconds: float = Field(default=1800, gt=0, description="Time for the whole search.")


class OpenPullRequestParams(RecipeParams):
    branch: str = Field(description="Branch the run's head is pushed to; the pull request's head.")
    base: str = Field(default="main", description="Branch the change is proposed for.")
    title: str | None = Field(default=None, description="Title (default: the head commit's subject).")
    remote_secret: str = Field(default="git-remote", description="Secret holding the git remote's URL.")
    backend: Literal["local", "github"] = Field(
        default="local", description="local: write the change request; github: open a pull request.")
    repository: str | None = Field(default=None, validate_default=True, description="github: owner/name.")
    api_url: str = Field(default="https://api.github.com", description="github: REST API base URL.")
    token_secret: str = Field(default="github-token", description="github: secret holding the token.")
    test_paths: list[str] = Field(default_factory=list, description="Tests to run and report (default: pytest's).")
    draft: bool = Field(default=False, description="github: open the pull request as a draft.")

    @field_validator("repository")
    @classmethod
    def _github_needs_repository(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("backend") == "github" and not value:
            raise ValueError("backend github needs the repository (OWNER/NAME)")
        return value


@dataclass(frozen=True)
class Recipe:
    name: str
    goal: str
    params: type[RecipeParams]
    build: Callable[[Any], list[dict[str, Any]]]

    def parameters(self) -> Iterator[tuple[str, str, str]]:
        """(name, default, description) of each parameter, for listings."""
        for name, field in self.params.model_fields.items():
            if field.is_required():
                yield name, "(required)", field.description or ""
                continue
            default = field.get_default(call_default_factory=True)
            yield name, yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip(), \
                field.description or ""


def _fix_lint(p: FixLintParams) -> list[dict[str, Any]]:
    ruff = {"paths": p.paths, **({"select": p.select} if p.select else {})}
    tests = {"paths": p.test_paths} if p.test_paths else {}
    return [
        {"id": "lint", "tool": "ruff", "args": {"mode": "check", **ruff},
         "description": "Count the violations before fixing."},
        {"id": "tests-before", "tool": "pytest", "args": tests, "success": {"tests_failed": 0},
         "description": "The suite is green before anything changes."},
        {"id": "fix", "tool": "ruff", "args": {"mode": "fix", **ruff}, "depends_on": ["lint", "tests-before"],
         "writes_workspace": True, "retries": 1, "success": {"lint_violations": 0,
                                                            "max_changed_lines": p.max_changed_lines},
         "description": "Apply ruff's safe fixes; no violation of the fixed rules may remain."},
        {"id": "format", "tool": "ruff", "args": {"mode": "format", "paths": p.paths}, "depends_on": ["fix"],
         "writes_workspace": True, "description": "Format the fixed files."},
        {"id": "tests-after", "tool": "pytest", "args": tests, "depends_on": ["format"],
         "success": {"tests_failed": 0}, "description": "The suite is still green."},
        {"id": "commit", "tool": "git", "depends_on": ["tests-after"], "writes_workspace": True,
         "args": {"op": "commit", "onto": "@base", "branch": p.branch,
                  "message": "Fix lint violations with ruff"},
         "description": f"Commit the fix on branch {p.branch} (in the run workspace)."},
    ]


def _test_and_report(p: TestAndReportParams) -> list[dict[str, Any]]:
    args: dict[str, Any] = {"paths": p.paths} if p.paths else {}
    if p.keyword:
        args["keyword"] = p.keyword
    return [{"id": "tests", "tool": "pytest", "args": args, "success": {"tests_failed": p.max_failures},
             "description": "Run the test suite in the sandbox and report the results."}]


def _triage_failure(p: TriageFailureParams) -> list[dict[str, Any]]:
    return [{"id": "bisect", "tool": "bisect", "args": {"test": p.test, "good": p.good, "bad": p.bad},
             "timeout_seconds": p.timeout_seconds,
             "description": f"Find the first commit between {p.good} and {p.bad} where {p.test} fails."}]


def _open_pull_request(p: OpenPullRequestParams) -> list[dict[str, Any]]:
    github = p.backend == "github"
    tests = {"paths": p.test_paths} if p.test_paths else {}
    request: dict[str, Any] = {"head": p.branch, "base": p.base, "backend": p.backend, **tests}
    if p.title:
        request["title"] = p.title
    if github:
        request.update(repository=p.repository, api_url=p.api_url, token_secret=p.token_secret,
                       draft=p.draft)
    push: dict[str, Any] = {"op": "push", "branch": p.branch, "remote_secret": p.remote_secret}
    if github:
        push["token_secret"] = p.token_secret
    return [
        {"id": "tests", "tool": "pytest", "args": tests, "success": {"tests_failed": 0},
         "description": "Nothing red is pushed: the suite passes at the run's head."},
        {"id": "push", "tool": "git", "args": push, "depends_on": ["tests"],
         "secrets": [p.remote_secret, *([p.token_secret] if github else [])],
         "description": f"Push the head to branch {p.branch} (git:push, an approval operation)."},
        {"id": "pull-request", "tool": "change_request", "args": request, "depends_on": ["push"],
         "secrets": [p.token_secret] if github else [],
         "description": f"Write the change request {p.branch} -> {p.base}"
                        + (f" and open it on GitHub ({p.repository})." if github else ".")},
    ]


RECIPES: dict[str, Recipe] = {
    r.name: r for r in (
        Recipe("fix-lint", "Fix ruff violations, keep the tests green, commit on a branch",
               FixLintParams, _fix_lint),
        Recipe("test-and-report", "Run the test suite and report the results",
               TestAndReportParams, _test_and_report),
        Recipe("triage-failure", "Find the commit that broke a test, with its author, diff and failure",
               TriageFailureParams, _triage_failure),
        Recipe("open-pull-request", "Push a branch and open a change request with tests and risk",
               OpenPullRequestParams, _open_pull_request),
    )
}


class RecipePlanner:
    """Builds plans from recipes; deterministic and offline."""

    name = PLANNER_NAME
    version = PLANNER_VERSION

    def plan(self, recipe: str, params: Mapping[str, Any] | RecipeParams | None = None) -> Plan:
        """The plan of ``recipe`` with ``params`` (validated; errors name the parameter)."""
        found = recipe_named(recipe)
        values = params if isinstance(params, RecipeParams) else parse_params(found, params or {})
        data = {
            "id": found.name, "goal": found.goal, "steps": found.build(values),
            "planner": PlannerInfo(
                name=self.name, version=self.version,
                rationale=f"recipe {found.name} with {values.model_dump_json()}",
            ).model_dump(),
        }
        return check_plan(Plan.model_validate(data), source=f"recipe '{found.name}'")


def recipe_named(name: str) -> Recipe:
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe '{name}'; known recipes: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def parse_params(recipe: Recipe, raw: Mapping[str, Any]) -> RecipeParams:
    """Validate parameters; string values are read as YAML (``[a, b]`` is a list, ``3`` a number)."""
    values = {k: _yaml_value(v) if isinstance(v, str) else v for k, v in raw.items()}
    try:
        return recipe.params.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"--param {'.'.join(str(p) for p in e['loc']) or '?'}: {e['msg']}"
                             for e in exc.errors())
        raise RecipeError(f"recipe '{recipe.name}': {problems}") from None


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` from the command line into a mapping; a malformed one names itself."""
    parsed = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z_][a-z0-9_]*", key):
            raise RecipeError(f"--param {item!r}: expected NAME=VALUE")
        parsed[key] = value
    return parsed


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text
