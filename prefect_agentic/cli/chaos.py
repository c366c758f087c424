"""``agentic chaos PLAN``: run a plan N times with seeded faults and report the invariants.

Exit codes as ``agentic run``: 0 no invariant was violated; 1 some invariant
was violated, or the plan fails without faults (no reference to judge by);
2 bad input; 3 the environment is not ready.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prefect_agentic.chaos.campaign import DEFAULT_SPEC, Campaign, CampaignError, CampaignReport
from prefect_agentic.errors import PlanError, SandboxError, WorkspaceError

err = Console(stderr=True)
out = Console(width=160, soft_wrap=False)
COLUMNS = ("injected", "recovered", "failed_cleanly", "absorbed", "violations")


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def chaos(
    plan_file: Annotated[Path, typer.Argument(help="Plan file (YAML or JSON).")],
    repo: Annotated[Path, typer.Option(help="Git repository to work on (only read).")] = Path("."),
    ref: Annotated[str, typer.Option(help="Commit, branch or tag to start from.")] = "HEAD",
    runs: Annotated[int, typer.Option(min=1, max=1000, help="Chaos runs (each followed by a clean re-run).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of run 1; run i uses seed + i - 1.")] = 0,
    chaos_spec: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--chaos", help="Chaos spec file or inline JSON (its seed is replaced); default: a mix of "
                        "first-attempt failures and latency.")] = None,
    bound: Annotated[float, typer.Option(min=1, help="Seconds a run may take to reach a terminal state.")] = 600,
    sandbox_block: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Name of a saved Agentic Sandbox Settings block (e.g. a wheelhouse).")] = None,
    policy_block: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Name of a saved Agentic Tool Policy block (e.g. one that auto-approves and grants secrets).")] = None,
    image: Annotated[Optional[str], typer.Option(help="Sandbox image (overrides the block).")] = None,  # noqa: UP045
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Steps run at once.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print the campaign report as JSON.")] = False,
) -> None:
    """Run a plan N times with faults; check every run's invariants; exit 1 if any was violated."""
    from prefect_agentic.blocks.sandbox_settings import SandboxSettings
    from prefect_agentic.blocks.tool_policy import ToolPolicy
    from prefect_agentic.chaos import load_chaos_spec
    from prefect_agentic.chaos.spec import ChaosSpecError
    from prefect_agentic.cli.main import _load_block  # main registers this command: loaded by now
    from prefect_agentic.cli.startup import RunClock, start_embedded_api
    from prefect_agentic.plan import load_plan
    from prefect_agentic.sandbox.runner import check_ready
    from prefect_agentic.settings import embedded_run_settings
    from prefect_agentic.workspace import resolve_base

    clock = RunClock()
    try:
        policy = _load_block("--policy-block", ToolPolicy, policy_block)
        plan = load_plan(plan_file, policy=policy)
        spec = load_chaos_spec(chaos_spec) if chaos_spec else DEFAULT_SPEC
        resolve_base(repo, ref)
        settings = _load_block("--sandbox-block", SandboxSettings, sandbox_block)
        if image:
            settings.image = image
        check_ready(settings)
    except (PlanError, WorkspaceError, ChaosSpecError) as exc:
        raise _fail(str(exc), 2) from None
    except SandboxError as exc:
        raise _fail(str(exc), 3) from None
    start_embedded_api(err, clock, show=not as_json)
    campaign = Campaign(plan, repo, ref=ref, sandbox=settings, policy=policy, concurrency=concurrency,
                        bound_s=bound, plan_file=plan_file, sandbox_block=sandbox_block, policy_block=policy_block,
                        progress=lambda line: err.print(escape(line), highlight=False, soft_wrap=True))
    try:
        with embedded_run_settings():
            report = campaign.run(spec, runs=runs, seed=seed)
    except CampaignError as exc:
        raise _fail(str(exc), 1) from None
    except WorkspaceError as exc:  # a clone of the repository, for the campaign's runs, could not be made
        raise _fail(str(exc), 3) from None
    if as_json:
        typer.echo(json.dumps(campaign_json(report), indent=2))
    else:
        _print(report)
    raise typer.Exit(0 if report.ok else 1)


def campaign_json(report: CampaignReport) -> dict[str, object]:
    return {**report.model_dump(mode="json"), "ok": report.ok,
            "kinds": {kind: counts.model_dump() for kind, counts in report.kinds.items()},
            "violations": [v.model_dump(mode="json") for v in report.violations]}


def _print(report: CampaignReport) -> None:
    out.print(f"chaos campaign of plan {report.plan_id}: {len(report.runs)} run(s) from seed {report.seed}, "
              f"reference run {report.reference_flow_run_id}", highlight=False)
    table = Table()
    table.add_column("fault kind")
    for column in COLUMNS:
        table.add_column(column.replace("_", " "), justify="right")
    for kind, counts in report.kinds.items():
        table.add_row(kind, *(str(getattr(counts, column)) for column in COLUMNS))
    out.print(table)
    for run in report.runs:
        for violation in run.violations:
            where = f" step {violation.step}" if violation.step else ""
            out.print(f"[red]✘[/] run {run.index + 1} (seed {run.seed}, {run.flow_run_id}){escape(where)} "
                      f"{violation.invariant.value}: {escape(violation.detail)}", highlight=False)
    verdict = "all invariants held" if report.ok else f"{len(report.violations)} invariant violation(s)"
    out.print(f"{len(report.runs)} run(s): {verdict}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command(name="chaos")(chaos)
