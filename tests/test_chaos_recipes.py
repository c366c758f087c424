"""The pack's own recipes and example plans under `agentic chaos`: every invariant holds (issue 16).

Each recipe's plan is the one `agentic plan RECIPE --param …` writes (the same planner and dump, in
this process: the command itself costs seconds of start-up and is tested in test_recipes.py), run on a
repository it is meant for (the bundled examples, built as the recipe tests build them) by
`agentic chaos PLAN --json` with a fixed seed and faults chosen for the plan's tools, on real Docker
and the session's Prefect server (the ``prefect_api`` fixture). A campaign passes when no invariant
was violated *and* the faults it names were injected: a campaign that injected nothing proves
nothing. Few recipe steps have retries, so most chaos runs end failed; that is the point: a run must
fail *cleanly* (terminal, classified, nothing left behind, nothing run twice) and its clean re-run
must reach the reference run's final snapshot, taking what the chaos run completed from the cache.

Recipes that need more than a repository run with the local options the recipe offers:

- ``open-pull-request`` pushes to a bare repository on this machine (its URL in a Prefect ``Secret``
  block) with the ``local`` backend, under a policy block that auto-approves ``git:push`` and grants
  the secret (`agentic chaos --policy-block`); the remote's branch must end at the head (pushed
  again by every run, never forced).
- ``upgrade-dependency`` installs from a wheelhouse built from the example's sources (a sandbox
  block, `agentic chaos --sandbox-block`). Its ``commit`` step asks a human (``requires_approval``,
  which no policy may auto-approve): the test approves every gate through the Prefect API, as an
  approver answering the UI's form would (``gate_helpers.ApproveEveryGate``). The reference run's
  approval is recorded for the run key and the commit's input, so the later runs do not ask again.
- ``upgrade-service`` canaries the example service on a stack of its own (Redis, two stable replicas,
  HAProxy, a traffic generator), as tests/test_upgrade_service.py runs it, under a policy block that
  auto-approves ``*:deploy``. The reference run promotes the change, so later runs canary the version
  the stack already serves; the traffic generator must not see one failed request throughout.
  ``canary_regression`` (the real rollback) has its own test: tests/test_chaos_canary.py.

Not run here: ``open-pull-request`` with ``backend=github`` (it needs GitHub; the same plan with
another ``change_request`` backend, run against the suite's GitHub-speaking server by
tests/test_open_pull_request.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, agentic_chaos_json, agentic_cli
from gate_helpers import ApproveEveryGate
from prefect.blocks.system import Secret
from test_open_pull_request import BRANCH, git, stats  # noqa: F401  (fixture)
from test_recipes_maintenance import wheelhouse  # noqa: F401  (fixture)
from test_upgrade_service import (  # noqa: F401  (fixtures)
    GOOD,
    canaries,
    sent_since,
    service_repo,
    service_runtime,
    stack,
    traffic,
)

from prefect_agentic.blocks import SandboxSettings, ToolPolicy
from prefect_agentic.chaos import ChaosSpec
from prefect_agentic.plan import load_plan
from prefect_agentic.plan.loader import dump_plan
from prefect_agentic.plan.models import Plan
from prefect_agentic.planners.recipes import RECIPES, RecipePlanner, parse_assignments


@dataclass(frozen=True)
class Where:
    """The repository a campaign runs on, and what `agentic chaos` needs besides it."""

    repo: Path
    ref: str = "HEAD"
    options: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    """Recipe parameters known only once the repository is there (a stack's name)."""
    after: Callable[[], None] = lambda: None
    """Checks, once the campaign ended, of what the runs change outside their workspace (a remote, a stack)."""


@dataclass(frozen=True)
class Campaign:
    """One campaign: the plan's recipe (or example plan), its repository, faults, seed and runs.

    ``injects`` are the fault kinds the campaign must inject. ``seeds`` says, for faults with a rate
    below 1, which of them (by index) hit a step of the plan's first attempt under each run's seed:
    the seeds were chosen for that, and ``ChaosSpec.hits`` checks it, so a change to the hash shows
    here rather than as a campaign that quietly injects something else.
    """

    name: str
    params: tuple[str, ...]
    where: Callable[[pytest.FixtureRequest], Where]
    faults: list[dict[str, Any]]
    injects: set[str]
    seed: int
    runs: int = 1
    seeds: dict[int, set[int]] = field(default_factory=dict)
    questions: int = 0
    """Approval questions a human answers over the whole campaign."""

    def plan(self, *more: str) -> Plan:
        """The plan as `agentic plan` writes it with ``params`` and ``more`` (an example plan: its file)."""
        if self.name in RECIPES:
            return RecipePlanner().plan(self.name, parse_assignments([*self.params, *more]))
        return load_plan(EXAMPLES / "plans" / f"{self.name}.yaml")


def demo(request: pytest.FixtureRequest) -> Where:
    """The demo repository of Getting started: five ruff violations, four passing tests."""
    return Where(request.getfixturevalue("make_repo")(example="demo"))


def example(name: str) -> Callable[[pytest.FixtureRequest], Where]:
    """A bundled example repository, as the recipe tests use it (test_recipes_maintenance.py)."""

    def make(request: pytest.FixtureRequest) -> Where:
        return Where(request.getfixturevalue("make_repo")(example=name))

    make.__doc__ = f"A copy of examples/repos/{name}, one commit."
    return make


def stats_history(request: pytest.FixtureRequest) -> Where:
    """The stats example with its history: a regression somewhere in the last six commits."""
    return Where(request.getfixturevalue("history_repo")("stats"))


def stats_with_remote(request: pytest.FixtureRequest) -> Where:
    """The stats example at its fix branch, a bare remote holding main, the remote's URL in a Secret
    block and a policy that lets a run without a human push there."""
    repo, remote = request.getfixturevalue("stats")
    Secret(value=str(remote)).save("chaos-git-remote", overwrite=True)
    ToolPolicy(auto_approve=["git:push"], secret_grants={"push": ["chaos-git-remote"]}).save(
        "chaos-pr-policy", overwrite=True)

    def pushed_the_head() -> None:
        assert git(remote, "rev-parse", f"refs/heads/{BRANCH}") == git(repo, "rev-parse", BRANCH)

    return Where(repo, ref=BRANCH, options=("--policy-block", "chaos-pr-policy"), after=pushed_the_head)


def upgrade_with_wheelhouse(request: pytest.FixtureRequest) -> Where:
    """The upgrade example (centlib 1.0.0 pinned) and a sandbox block mounting the example's wheelhouse."""
    SandboxSettings(wheelhouse=str(request.getfixturevalue("wheelhouse"))).save("chaos-wheelhouse", overwrite=True)
    return Where(request.getfixturevalue("make_repo")(example="upgrade-demo"),
                 options=("--sandbox-block", "chaos-wheelhouse"))


def service_stack(request: pytest.FixtureRequest) -> Where:
    """The example service in a stack of its own (Redis, two stable replicas, HAProxy, traffic), as
    tests/test_upgrade_service.py runs it, and a policy that lets a run without a human deploy."""
    target, docker_client = request.getfixturevalue("stack"), request.getfixturevalue("docker_client")
    ToolPolicy(auto_approve=["*:deploy"]).save("chaos-deploy-policy", overwrite=True)
    before, sent_before = target.state(), traffic(target)

    def promoted_without_a_failed_request() -> None:
        after = target.state()
        assert after.stable_version != before.stable_version and after.canary_version is None
        assert canaries(docker_client, target) == 0
        sent, lost = sent_since(target, sent_before)
        assert sent > 0 and lost == 0, (sent, lost)

    return Where(request.getfixturevalue("service_repo"), options=("--policy-block", "chaos-deploy-policy"),
                 params=(f"stack={target.name}",), after=promoted_without_a_failed_request)


RECIPE_CAMPAIGNS = [
    Campaign("fix-lint", (), demo, seed=1, injects={"container_kill", "garbled_output", "latency_before"}, faults=[
        # fix has retries: 1; its first attempt loses its container as ruff starts
        {"kind": "container_kill", "steps": "fix", "attempts": [1], "seconds": 0},
        # the suite's report after the fix arrives spoiled: tests-after fails, commit never runs
        {"kind": "garbled_output", "steps": "tests-after"},
        {"kind": "latency_before", "steps": "lint", "seconds": 0.2}]),
    Campaign("test-and-report", (), demo, seed=22, runs=2, injects={"garbled_output", "container_kill"},
             seeds={22: {0}, 23: {1}}, faults=[
        {"kind": "garbled_output", "tools": "pytest", "rate": 0.5},
        {"kind": "container_kill", "tools": "pytest", "rate": 0.5, "seconds": 0}]),
    Campaign("triage-failure", ("test=tests/test_stats.py::test_mean_of_uneven_values", "good=HEAD~6"),
             stats_history, seed=0, injects={"container_kill", "latency_before"}, faults=[
        # half a second into the search, bisect's container is killed
        {"kind": "container_kill", "tools": "bisect", "seconds": 0.5},
        {"kind": "latency_before", "seconds": 0.2}]),
    Campaign("open-pull-request", (f"branch={BRANCH}", "remote_secret=chaos-git-remote"), stats_with_remote,
             seed=24, runs=2, injects={"garbled_output", "tool_exit", "latency_before"},
             seeds={24: {0}, 25: {1}}, faults=[
        # nothing is pushed after a spoiled test report
        {"kind": "garbled_output", "steps": "tests", "rate": 0.5},
        # after the push (a second push of the same head: the remote has it), the change request fails
        {"kind": "tool_exit", "steps": "pull-request", "rate": 0.5},
        {"kind": "latency_before", "steps": "push", "seconds": 0.2}]),
    Campaign("upgrade-dependency", ("package=centlib", "version=2.0.0"), upgrade_with_wheelhouse, seed=0,
             # the commit gate is asked by the reference run and by the re-run: each trial of a campaign
             # has a workspace of its own, so no approval of another trial answers it
             injects={"container_kill", "garbled_output"}, questions=2, faults=[
        # pip's install loses its container as it starts; lint reads a spoiled ruff report
        {"kind": "container_kill", "steps": "install", "seconds": 0},
        {"kind": "garbled_output", "tools": "ruff"}]),
    # one function (clamp, whose test is kept): the ghostwriter's time is most of the run's
    Campaign("generate-tests", ("packages=[geometry]", "max_functions=1"), example("gentests-demo"), seed=0,
             injects={"garbled_output", "latency_before"}, faults=[
        # the generated tests are kept; the coverage report that would show their gain is spoiled
        {"kind": "garbled_output", "tools": "coverage"},
        {"kind": "latency_before", "steps": "tests-before", "seconds": 0.2}]),
    Campaign("upgrade-service", ("stack=shop", f"change={GOOD}", "steps=[50, 100]", "window_seconds=4",
                                 "interval_seconds=1.5", "min_requests=8"), service_stack, seed=0,
             injects={"tool_exit", "latency_before"}, faults=[
        # the canary's first attempt fails before it deploys anything, as a refused deploy would
        {"kind": "tool_exit", "tools": "service_canary", "attempts": [1]},
        {"kind": "latency_before", "tools": "service_*", "seconds": 0.2}]),
    Campaign("security-scan", (), example("scan-demo"), seed=18, runs=2, injects={"garbled_output", "container_kill"},
             seeds={18: {0}, 19: {1}}, faults=[
        {"kind": "garbled_output", "tools": "bandit", "rate": 0.5},
        {"kind": "container_kill", "tools": "bandit", "rate": 0.5, "seconds": 0}]),
]

EXAMPLE_CAMPAIGNS = [
    # tests/test_chaos_campaign.py runs this plan with a killed container, a refusing engine and spoiled
    # reports; here: the stood-in failures (fix has retries: 2; tests has none)
    Campaign("fix-lint-demo", (), demo, seed=0, injects={"tool_exit", "tool_timeout", "latency_after"}, faults=[
        {"kind": "tool_exit", "steps": "fix", "attempts": [1]},
        {"kind": "tool_timeout", "steps": "tests"},
        {"kind": "latency_after", "steps": "lint", "seconds": 0.2}]),
]


def test_every_recipe_and_example_plan_has_a_campaign_whose_faults_reach_its_steps() -> None:
    assert {c.name for c in RECIPE_CAMPAIGNS} == set(RECIPES)
    assert {c.name for c in EXAMPLE_CAMPAIGNS} == {p.stem for p in (EXAMPLES / "plans").glob("*.yaml")}
    for campaign in RECIPE_CAMPAIGNS + EXAMPLE_CAMPAIGNS:
        spec, steps = ChaosSpec.model_validate({"faults": campaign.faults}), campaign.plan().steps
        assert {f.kind.value for f in spec.faults} >= campaign.injects, campaign.name
        assert all(any(f.selects(s.tool, s.id, 1) for s in steps) for f in spec.faults), campaign.name
        for seed, hitting in campaign.seeds.items():
            seeded = spec.model_copy(update={"seed": seed})
            assert {i for i, f in enumerate(spec.faults) if f.rate < 1 and any(
                f.selects(s.tool, s.id, 1) and seeded.hits(i, s.id, 1) for s in steps)} == hitting, (campaign.name, seed)


def run_campaign(campaign: Campaign, plan: Path, where: Where, image: str) -> None:
    """`agentic chaos PLAN --json` on the session's Prefect server; every invariant must hold and the
    campaign's faults must have been injected."""
    report, progress = agentic_chaos_json(plan, where.repo, image, json.dumps({"faults": campaign.faults}),
                                          campaign.runs, campaign.seed, "--ref", where.ref,
                                          "--bound", "300", *where.options, server=True)
    assert report["ok"] is True and report["violations"] == [], progress
    assert [r["seed"] for r in report["runs"]] == [campaign.seed + i for i in range(campaign.runs)]
    assert all(r["status"] in ("completed", "failed") for r in report["runs"]), report["runs"]
    injected = {kind for kind, counts in report["kinds"].items() if counts["injected"]}
    assert injected == campaign.injects, (report["kinds"], progress)


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("campaign", RECIPE_CAMPAIGNS, ids=lambda c: c.name)
def test_a_recipe_keeps_every_invariant_under_faults(campaign: Campaign, request: pytest.FixtureRequest,
                                                      sandbox_image: str, tmp_path: Path) -> None:
    plan = tmp_path / f"{campaign.name}.yaml"
    where = campaign.where(request)
    plan.write_text(dump_plan(campaign.plan(*where.params)))  # what `agentic plan RECIPE --param … -o plan.yaml` writes
    approver = ApproveEveryGate()
    try:
        run_campaign(campaign, plan, where, sandbox_image)
    finally:
        approver.stop()
    # a gated step is asked about once: its approval is recorded for the run key and the step's input
    assert len(approver.questions) == campaign.questions, approver.questions
    where.after()


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("campaign", EXAMPLE_CAMPAIGNS, ids=lambda c: c.name)
def test_an_example_plan_keeps_every_invariant_under_faults(campaign: Campaign, request: pytest.FixtureRequest,
                                                             sandbox_image: str) -> None:
    run_campaign(campaign, EXAMPLES / "plans" / f"{campaign.name}.yaml", campaign.where(request), sandbox_image)


@pytest.mark.usefixtures("prefect_api")
def test_a_block_that_is_not_saved_is_refused_before_anything_runs(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(dump_plan(RecipePlanner().plan("test-and-report")))
    refused = agentic_cli("chaos", str(plan), "--repo", str(make_repo({"f": "x"})), "--policy-block", "no-such-policy")
    assert refused.returncode == 2, refused.stderr
    assert "--policy-block no-such-policy:" in refused.stderr
