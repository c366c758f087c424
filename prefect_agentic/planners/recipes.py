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
from prefect_agentic.sandbox.runner import WHEELHOUSE_MOUNT
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.tools.scan import ScanOutput

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
class UpgradeDependencyParams(RecipeParams):
    package: str = Field(min_length=1, description="The pinned dependency to upgrade.")
    version: str = Field(min_length=1, description="The version to pin; its wheel must be in the wheelhouse.")
    files: list[str] = Field(default_factory=lambda: ["requirements.txt"], min_length=1,
                             description="Requirement files holding the pin (requirements.txt, pyproject.toml).")
    wheelhouse: str = Field(default=WHEELHOUSE_MOUNT,
                            description="Wheels in the sandbox (SandboxSettings.wheelhouse mounts them here).")
    test_paths: list[str] = Field(default_factory=list, description="Tests that must pass (default: pytest's).")
    lint_paths: list[str] = Field(default_factory=lambda: ["."], description="What ruff checks.")
    max_lint_violations: int = Field(default=0, ge=0, description="Lint may report at most this many.")
    branch: str | None = Field(default=None, description="Branch of the commit (default: agentic/upgrade-PACKAGE).")


class GenerateTestsParams(RecipeParams):
    packages: list[str] = Field(min_length=1, description="Packages or modules to write tests for.")
    test_dir: str = Field(default="tests/generated", description="Where the generated tests go.")
    test_paths: list[str] = Field(default_factory=list, description="The existing suite (default: pytest's).")
    min_coverage_gain: float = Field(default=0.1, gt=0, description="Coverage must rise by this many points.")
    max_functions: int = Field(default=25, ge=1, le=200, description="Write tests for at most this many functions.")
    branch: str = Field(default="agentic/generate-tests", description="Branch the tests are committed on.")


class SecurityScanParams(RecipeParams):
    paths: list[str] = Field(default_factory=lambda: ["."], description="What to scan.")
    exclude: list[str] = Field(default_factory=list, description="Paths (globs) to leave out.")
    severity: Literal["low", "medium", "high"] = Field(default="high",
                                                       description="Gate on findings of at least this severity.")
    against: str = Field(default="main", description="Compare with this branch, tag or commit ('@base': the run's).")
    max_new_findings: int = Field(default=0, ge=0, description="The run fails with more new findings than this.")
    scanners: list[str] = Field(default_factory=lambda: ["bandit"], min_length=1,
                                description="Scanner tools to run (each takes ScanInput, returns ScanOutput).")


class UpgradeServiceParams(RecipeParams):
    stack: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$", description="The service's running stack (`agentic canaries up`).")
    change: str = Field(min_length=1, description="Shell command that makes the change in the workspace (a patch, a sed, a pin).")
    path: str = Field(default=".", description="The service's directory in the repository.")
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100], min_length=1,
                             description="Canary traffic shares in %, rising, ending at 100.")
    window_seconds: float = Field(default=30, gt=0, description="Observation window of each canary step.")
    interval_seconds: float = Field(default=2, gt=0, description="Time between two canary checks.")
    max_error_rate: float = Field(default=0.05, ge=0, le=1, description="Canary share of 5xx answers allowed.")
    max_latency_ms: float = Field(default=500, gt=0, description="Limit of the canary's p95 latency.")
    min_requests: int = Field(default=20, ge=1, description="Requests each step's window needs to be judged.")
    failure_limit: int = Field(default=2, ge=1, description="Failed checks that roll the canary back.")
    branch: str = Field(default="agentic/upgrade-service", description="Branch the change is committed on.")
    promote_gate: bool = Field(default=False, description="Ask a human before the last canary step (100 %); "
                               "a rejection, or no answer in time, rolls the canary back.")


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


def _upgrade_dependency(p: UpgradeDependencyParams) -> list[dict[str, Any]]:
    branch = p.branch or f"agentic/upgrade-{p.package}"
    tests: dict[str, Any] = {"requirements": p.files, "wheelhouse": p.wheelhouse,
                             **({"paths": p.test_paths} if p.test_paths else {})}
    return [
        {"id": "bump", "tool": "pip", "writes_workspace": True,
         "args": {"op": "pin", "package": p.package, "version": p.version, "files": p.files},
         "description": f"Pin {p.package}=={p.version} in {', '.join(p.files)}."},
        {"id": "install", "tool": "pip", "depends_on": ["bump"],
         "args": {"op": "install", "package": p.package, "version": p.version, "files": p.files,
                  "wheelhouse": p.wheelhouse},
         "description": "Install the pinned requirements from the wheelhouse, offline."},
        {"id": "tests", "tool": "pytest", "depends_on": ["install"], "args": tests,
         "success": {"tests_failed": 0}, "description": "The suite passes with the new version."},
        {"id": "lint", "tool": "ruff", "depends_on": ["bump"], "args": {"mode": "check", "paths": p.lint_paths},
         "success": {"lint_violations": p.max_lint_violations}, "description": "Lint stays clean."},
        {"id": "commit", "tool": "git", "depends_on": ["tests", "lint"], "writes_workspace": True,
         "requires_approval": True,
         "args": {"op": "commit", "onto": "@base", "branch": branch,
                  "message": f"Upgrade {p.package} to {p.version}"},
         "description": f"After a human's approval, commit the upgrade on branch {branch}."},
    ]


def _generate_tests(p: GenerateTestsParams) -> list[dict[str, Any]]:
    suite = {"paths": p.test_paths} if p.test_paths else {}
    sources = [name.replace(".", "/") for name in p.packages]
    return [
        {"id": "tests-before", "tool": "pytest", "args": suite, "success": {"tests_failed": 0},
         "description": "The suite is green before tests are added."},
        {"id": "generate", "tool": "ghostwrite", "depends_on": ["tests-before"], "writes_workspace": True,
         "args": {"packages": p.packages, "test_dir": p.test_dir, "max_functions": p.max_functions, **suite},
         "success": {"unchanged_paths": [f"{s}{suffix}" for s in sources for suffix in ("/", ".py")]},
         "description": "Ghostwrite tests for untested public functions; keep the passing ones that add coverage."},
        {"id": "coverage", "tool": "coverage", "depends_on": ["generate"],
         "args": {"source": p.packages, **({"paths": [*p.test_paths, p.test_dir]} if p.test_paths else {})},
         "success": {"tests_failed": 0, "min_coverage_gain": p.min_coverage_gain},
         "description": "The suite stays green and coverage rises over the base."},
        {"id": "commit", "tool": "git", "depends_on": ["coverage"], "writes_workspace": True,
         "args": {"op": "commit", "onto": "@base", "branch": p.branch,
                  "message": f"Add generated tests for {', '.join(p.packages)}"},
         "description": f"Commit the generated tests on branch {p.branch} (in the run workspace)."},
    ]


def _security_scan(p: SecurityScanParams) -> list[dict[str, Any]]:
    registry = default_registry()
    steps = []
    for scanner in p.scanners:
        tool = registry.get(scanner) if scanner in registry else None
        if tool is None or not issubclass(tool.Output, ScanOutput):
            raise RecipeError(f"recipe 'security-scan': --param scanners: '{scanner}' is not a scanner tool "
                              f"(scanners: {', '.join(t.name for t in registry if issubclass(t.Output, ScanOutput))})")
        steps.append(
            {"id": f"scan-{scanner}", "tool": scanner, "success": {"new_findings": p.max_new_findings},
             "args": {"paths": p.paths, "exclude": p.exclude, "severity": p.severity, "against": p.against},
             "description": f"{scanner}: at most {p.max_new_findings} new {p.severity}+ findings since {p.against}."})
    return steps


def _shares(steps: list[int]) -> str:
    return " -> ".join(f"{share} %" for share in steps)


def _upgrade_service(p: UpgradeServiceParams) -> list[dict[str, Any]]:
    service = {"path": p.path}
    thresholds = {"max_error_rate": p.max_error_rate, "max_latency_ms": p.max_latency_ms,
                  "min_requests": p.min_requests, "failure_limit": p.failure_limit,
                  "window_seconds": p.window_seconds, "interval_seconds": p.interval_seconds}
    tests = f"{p.path.rstrip('/')}/tests" if p.path not in ("", ".") else "tests"
    if p.promote_gate and len(p.steps) < 2:
        raise RecipeError(f"recipe 'upgrade-service': --param promote_gate needs a canary step below 100 % "
                          f"before the gate (steps: {p.steps})")
    canary = {**service, "stack": p.stack, "thresholds": thresholds}
    if p.promote_gate:
        rollout = [
            {"id": "canary", "tool": "service_canary", "depends_on": ["integration"],
             "args": {**canary, "steps": p.steps[:-1], "hold": True},
             "description": f"After approval, canary the new version in stack '{p.stack}' at "
                            f"{_shares(p.steps[:-1])} and hold it there; roll it back on a "
                            "breach."},
            {"id": "promote", "tool": "service_canary", "depends_on": ["canary"], "requires_approval": True,
             "args": {**canary, "steps": p.steps[-1:]},
             "description": f"After a human's approval of the canary's metrics, send it {p.steps[-1]} % and promote "
                            "it; a rejection rolls it back."},
        ]
    else:
        rollout = [
            {"id": "canary", "tool": "service_canary", "depends_on": ["integration"],
             "args": {**canary, "steps": p.steps},
             "description": f"After approval, canary the new version in stack '{p.stack}' at "
                            f"{_shares(p.steps)}; promote it, or roll it back on a breach."},
        ]
    return [
        {"id": "change", "tool": "shell", "args": {"command": p.change}, "writes_workspace": True,
         "description": "Apply the change to the service."},
        {"id": "unit-tests", "tool": "pytest", "depends_on": ["change"], "args": {"paths": [tests]},
         "success": {"tests_failed": 0}, "description": "The service's own tests pass with the change."},
        {"id": "lint", "tool": "ruff", "depends_on": ["change"], "args": {"mode": "check", "paths": [p.path]},
         "success": {"lint_violations": 0}, "description": "Lint stays clean."},
        {"id": "commit", "tool": "git", "depends_on": ["unit-tests", "lint"], "writes_workspace": True,
         "args": {"op": "commit", "onto": "@base", "branch": p.branch, "message": f"Upgrade service: {p.change}"},
         "description": f"Commit the change on branch {p.branch}."},
        {"id": "image", "tool": "service_image", "depends_on": ["commit"], "args": service,
         "description": "Build the new version's image from the workspace, offline."},
        {"id": "integration", "tool": "service_integration", "depends_on": ["image"], "args": service,
         "description": "Integration checks against the new version and its cache in an ephemeral environment."},
        *rollout,
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
        Recipe("upgrade-dependency", "Upgrade a pinned dependency from a wheelhouse; test, lint, commit after approval",
               UpgradeDependencyParams, _upgrade_dependency),
        Recipe("generate-tests", "Generate tests for untested functions; keep those that pass and raise coverage",
               GenerateTestsParams, _generate_tests),
        Recipe("security-scan", "Scan for security findings; fail on new ones since a base",
               SecurityScanParams, _security_scan),
        Recipe("upgrade-service", "Change a service, test it, then canary it after approval; roll back on a breach",
               UpgradeServiceParams, _upgrade_service),
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
