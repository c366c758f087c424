"""``agentic export``: a run's final snapshot into your repository, as a new branch.

See ``prefect_agentic.export`` for how (git plumbing; your checked-out branch,
index and worktree are never touched) and docs/guides/export.md for the user's view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from prefect_agentic.blocks.audit_storage import AuditStorage
from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.cli.runs import audited_run_id
from prefect_agentic.export import (
    default_branch,
    export_snapshot,
    push_branch,
    push_decision,
    run_snapshot,
)
from prefect_agentic.record.store import AuditStore
from prefect_agentic.replay import load_records

RUN_HELP = "Flow run id of the run (or a unique start of it)."
BLOCK_HELP = "Name of a saved Agentic Audit Storage block (default: $AGENTIC_AUDIT_BLOCK, else local)."
POLICY_HELP = "Name of a saved Agentic Tool Policy block that decides about --push (default: the built-in policy)."


def export(
    run: Annotated[str, typer.Argument(metavar="RUN", help=RUN_HELP)],
    into: Annotated[Path, typer.Option(help="Your repository (it gets a new branch; nothing else changes).")],
    branch: Annotated[Optional[str], typer.Option(help="Branch name (default: agentic/<plan>-<run id start>).")] = None,  # noqa: UP045
    overwrite: Annotated[bool, typer.Option(help="Move the branch if it exists (never a checked-out one).")] = False,
    push: Annotated[Optional[str], typer.Option(metavar="REMOTE", help="Then push the branch to this remote of your repository.")] = None,  # noqa: UP045
    policy_block: Annotated[Optional[str], typer.Option(help=POLICY_HELP)] = None,  # noqa: UP045
    audit_block: Annotated[Optional[str], typer.Option(help=BLOCK_HELP)] = None,  # noqa: UP045
) -> None:
    """Bring a run's final snapshot into your repository as a new branch (and push it, if asked)."""
    store = AuditStore(AuditStorage.configured(audit_block))
    run_id = audited_run_id(store, run)
    workspace, snapshot, plan_id, status = run_snapshot(load_records(store, run_id))
    name = branch or default_branch(plan_id, run_id)
    if push is not None:  # refused before anything changes
        policy = ToolPolicy.load(policy_block) if policy_block else ToolPolicy()
        decision = push_decision(policy, push, name, by_human=True)
        if not decision.allowed:
            typer.echo(f"error: not pushing: denied by policy rule '{decision.rule}': {decision.reason}", err=True)
            raise typer.Exit(2)
    result = export_snapshot(workspace, snapshot, into, name, overwrite=overwrite)
    moved = f" (was {result.replaced[:12]})" if result.replaced else ""
    typer.echo(f"branch {result.branch} -> {result.commit[:12]}{moved} in {result.repo} "
               f"(run {run_id}, {status})")
    if push is not None:
        push_branch(Path(result.repo), push, name)
        typer.echo(f"pushed {name} to {push}")


def register(app: typer.Typer) -> None:
    app.command()(export)
