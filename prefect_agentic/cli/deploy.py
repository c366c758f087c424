"""``agentic init``, ``submit``, ``up`` and ``down``: prefect-agentic on a Prefect server.

``init`` prepares the current Prefect API (block types and default documents,
work pools), ``submit`` triggers a deployment with a plan file, ``up``/``down``
start and stop a local server with a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from prefect_agentic.errors import AgenticError, PlanError, SubmissionParameterError

err = Console(stderr=True)


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def init(
    name: Annotated[str, typer.Option(help="Name of the default block documents.")] = "default",
    overwrite: Annotated[bool, typer.Option(help="Replace existing documents of that name.")] = False,
    crash_after: Annotated[float, typer.Option(
        help="Seconds without a heartbeat after which a flow run counts as crashed and is retried "
             "(keep it well above the workers' PREFECT_FLOWS_HEARTBEAT_FREQUENCY, default 180).",
    )] = 600,
) -> None:
    """Register the pack's blocks, save default documents, create the work pools and crash automations."""
    from prefect.settings import PREFECT_API_URL

    from prefect_agentic.automations import ensure_crash_automations
    from prefect_agentic.blocks.defaults import save_default_documents
    from prefect_agentic.work_pools import ensure_work_pools

    api = PREFECT_API_URL.value()
    if not api:
        raise _fail("no Prefect API configured: set PREFECT_API_URL (or `agentic up`) first", 3)
    typer.echo(f"Prefect API {api}")
    for doc in save_default_documents(name, overwrite=overwrite):
        typer.echo(f"  block {doc.block_type}/{doc.name}: {doc.outcome}")
    for pool, outcome in ensure_work_pools().items():
        typer.echo(f"  work pool {pool}: {outcome}")
    for automation, outcome in ensure_crash_automations(crash_after).items():
        typer.echo(f"  automation '{automation}': {outcome}")


def submit(
    plan_file: Annotated[Path, typer.Argument(help="Plan file (YAML or JSON).")],
    repo: Annotated[Path, typer.Option(help="Git repository, as a path the worker can read.")] = Path("."),
    ref: Annotated[str, typer.Option(help="Commit, branch or tag to start from.")] = "HEAD",
    deployment: Annotated[str, typer.Option(help="Deployment to run (flow/deployment).")] = "run-plan/default",
    sandbox_block: Annotated[Optional[str], typer.Option(help="Saved Agentic Sandbox Settings block.")] = None,  # noqa: UP045
    policy_block: Annotated[Optional[str], typer.Option(help="Saved Agentic Tool Policy block.")] = None,  # noqa: UP045
    budget_block: Annotated[Optional[str], typer.Option(help="Saved Agentic Budget block.")] = None,  # noqa: UP045
    param: Annotated[list[str], typer.Option(
        "--param", "-p", help="More flow parameters: NAME=VALUE (VALUE read as YAML), e.g. loop='{escalate: true}'.",
    )] = [],  # noqa: B006
    wait: Annotated[bool, typer.Option(help="Wait for the run to end; exit 0 only if it completed.")] = False,
    timeout: Annotated[int, typer.Option(help="With --wait: seconds to wait at most.")] = 3600,
    on_upgrade: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="pinned or upgrade: what the run does when resumed where a version it pinned is gone "
             "(default: the deployment's on_upgrade parameter, else pinned).")] = None,
) -> None:
    """Trigger a deployment with a plan file; prints the flow run's UI link."""
    from prefect_agentic.blocks import Budget, SandboxSettings, ToolPolicy
    from prefect_agentic.plan import load_plan
    from prefect_agentic.planners.recipes import RecipeError, parse_assignments
    from prefect_agentic.submit import (
        block_values,
        flow_run_url,
        require_server,
        submit_plan,
        wait_for,
    )

    try:
        require_server()
        plan = load_plan(plan_file)
        extra = {name: yaml.safe_load(value) for name, value in parse_assignments(param).items()}
        extra.update({name: block_values(kind, block) for name, kind, block in (
            ("sandbox", SandboxSettings, sandbox_block), ("policy", ToolPolicy, policy_block),
            ("budget", Budget, budget_block)) if block})
        if on_upgrade is not None:
            if on_upgrade not in ("pinned", "upgrade"):
                raise _fail(f"--on-upgrade {on_upgrade}: give pinned or upgrade", 2)
            extra["on_upgrade"] = on_upgrade
        flow_run = submit_plan(plan, str(repo.resolve()), ref=ref, deployment=deployment, parameters=extra)
    except (PlanError, RecipeError, SubmissionParameterError, yaml.YAMLError) as exc:
        raise _fail(str(exc), 2) from None
    except AgenticError as exc:
        raise _fail(str(exc), 3) from None
    typer.echo(f"submitted {plan.id} v{plan.version} to {deployment}: flow run {flow_run.name} ({flow_run.id})")
    url = flow_run_url(flow_run.id)
    if url:
        typer.echo(url)
    if not wait:
        return
    final = wait_for(flow_run.id, timeout, on_gate=lambda notice: typer.echo(notice.text()))
    state = final.state
    typer.echo(f"flow run {final.name}: {state.name if state else 'unknown'}")
    raise typer.Exit(0 if state is not None and state.is_completed() else 1)


def up(
    port: Annotated[int, typer.Option(help="Port of the Prefect server.")] = 4200,
    host: Annotated[str, typer.Option(help="Address the server listens on.")] = "127.0.0.1",
    pool: Annotated[str, typer.Option(help="Work pool of the worker.")] = "agentic-process",
) -> None:
    """Start a local Prefect server and a worker for the local work pool (in the background)."""
    from prefect_agentic.stack import stack_dir, start_stack

    try:
        stack = start_stack(host=host, port=port, pool=pool)
    except AgenticError as exc:
        raise _fail(str(exc), 3) from None
    typer.echo(f"Prefect server: {stack.ui_url} (pid {stack.server_pid})")
    typer.echo(f"worker on pool {stack.pool} (pid {stack.worker_pid}); logs in {stack_dir()}")
    typer.echo(f"use it: export PREFECT_API_URL={stack.api_url}")


def down() -> None:
    """Stop the worker and the server `agentic up` started."""
    from prefect_agentic.stack import stop_stack

    stack = stop_stack()
    typer.echo("no local stack was running" if stack is None else
               f"stopped the worker (pid {stack.worker_pid}) and the server (pid {stack.server_pid})")


def register(app: typer.Typer) -> None:
    for command in (init, submit, up, down):
        app.command()(command)
