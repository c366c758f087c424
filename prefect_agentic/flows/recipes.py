"""One deployable flow per recipe, with the recipe's parameters as a typed flow parameter.

Each flow asks the recipe planner for the plan and runs it as a ``run-plan``
subflow, so a recipe run is cached, resumable, gated and recorded exactly like
a hand-written plan, and the plan it ran is stored on the subflow run.
"""

from __future__ import annotations

from prefect import flow
from pydantic import SecretStr

from prefect_agentic.blocks.budget import Budget
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.flows.run_plan import run_plan
from prefect_agentic.planners.recipes import (
    FixLintParams,
    GenerateTestsParams,
    OpenPullRequestParams,
    RecipePlanner,
    SecurityScanParams,
    TestAndReportParams,
    TriageFailureParams,
    UpgradeDependencyParams,
    UpgradeServiceParams,
)
from prefect_agentic.report import RunReport


@flow(name="fix-lint", description="Fix ruff violations, keep the tests green, commit on a branch.")
def fix_lint(repo: str, params: FixLintParams | None = None, ref: str = "HEAD",
             sandbox: SandboxSettings | None = None, policy: ToolPolicy | None = None,
             budget: Budget | None = None) -> RunReport:
    plan = RecipePlanner().plan("fix-lint", params or FixLintParams())
    return run_plan(plan=plan, repo=repo, ref=ref, sandbox=sandbox, policy=policy, budget=budget)


@flow(name="test-and-report", description="Run the test suite in the sandbox and report the results.")
def test_and_report(repo: str, params: TestAndReportParams | None = None, ref: str = "HEAD",
                    sandbox: SandboxSettings | None = None, policy: ToolPolicy | None = None,
                    budget: Budget | None = None) -> RunReport:
    plan = RecipePlanner().plan("test-and-report", params or TestAndReportParams())
    return run_plan(plan=plan, repo=repo, ref=ref, sandbox=sandbox, policy=policy, budget=budget)


@flow(name="triage-failure", description="Find the commit that broke a test with git bisect in the sandbox.")
def triage_failure(repo: str, params: TriageFailureParams, ref: str = "HEAD",
                   sandbox: SandboxSettings | None = None, policy: ToolPolicy | None = None,
                   budget: Budget | None = None) -> RunReport:
    plan = RecipePlanner().plan("triage-failure", params)
    return run_plan(plan=plan, repo=repo, ref=ref, sandbox=sandbox, policy=policy, budget=budget)


@flow(name="open-pull-request", description="Push a branch and open a change request with tests and risk.")
def open_pull_request(repo: str, params: OpenPullRequestParams, ref: str = "HEAD",
                      sandbox: SandboxSettings | None = None, policy: ToolPolicy | None = None,
                      budget: Budget | None = None,
                      secrets: dict[str, SecretStr] | None = None) -> RunReport:
    """``secrets`` (or Prefect Secret blocks of the same names) hold the remote's URL and the
    token; ``policy`` must grant them to the push and pull-request steps."""
    plan = RecipePlanner().plan("open-pull-request", params)
    return run_plan(plan=plan, repo=repo, ref=ref, sandbox=sandbox, policy=policy, budget=budget,
                    secrets=secrets)


@flow(name="upgrade-dependency",
      description="Upgrade a pinned dependency from a wheelhouse; test, lint, commit after approval.")
def upgrade_dependency(repo: str, params: UpgradeDependencyParams, ref: str = "HEAD",
                       sandbox: SandboxSettings | None = None, policy: ToolPolicy | None = None,
                       budget: Budget | None = None) -> RunReport:
    """``sandbox.wheelhouse`` names the host directory of wheels the steps install from."""
    plan = RecipePlanner().plan("upgrade-dependency", params)
    return run_plan(plan=plan, repo=repo, ref=ref, sandbox=sandbox, policy=policy, budget=budget)


@flow(name="generate-tests",
      description="Generate tests for untested functions; keep those that pass and raise coverage.")
def generate_tests(repo: str, params: GenerateTestsParams, ref: str = "HEAD",
                   sandbox: SandboxSettings | None = None, policy: ToolPolicy | None = None,
                   budget: Budget | None = None) -> RunReport:
    plan = RecipePlanner().plan("generate-tests", params)
    return run_plan(plan=plan, repo=repo, ref=ref, sandbox=sandbox, policy=policy, budget=budget)


@flow(name="security-scan", description="Scan for security findings; fail on new ones since a base.")
def security_scan(repo: str, params: SecurityScanParams | None = None, ref: str = "HEAD",
                  sandbox: SandboxSettings | None = None, policy: ToolPolicy | None = None,
                  budget: Budget | None = None) -> RunReport:
    plan = RecipePlanner().plan("security-scan", params or SecurityScanParams())
    return run_plan(plan=plan, repo=repo, ref=ref, sandbox=sandbox, policy=policy, budget=budget)


@flow(name="upgrade-service",
      description="Change a service, test it, canary it after approval; roll back on a breach.")
def upgrade_service(repo: str, params: UpgradeServiceParams, ref: str = "HEAD",
                    sandbox: SandboxSettings | None = None, policy: ToolPolicy | None = None,
                    budget: Budget | None = None) -> RunReport:
    plan = RecipePlanner().plan("upgrade-service", params)
    return run_plan(plan=plan, repo=repo, ref=ref, sandbox=sandbox, policy=policy, budget=budget)
