"""``agentic upgrade-check`` (before upgrading workers: which in-flight runs would stop) and
``agentic retry`` (a deployed run that stopped, started again, optionally with another upgrade policy)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from prefect_agentic.errors import AgenticError

err = Console(stderr=True)

TOOLS_FROM_HELP = ("The pack to check against: a wheel, or a directory holding prefect_agentic "
                   "(default: the installed pack).")


def upgrade_check(
    tools_from: Annotated[Optional[Path], typer.Option(help=TOOLS_FROM_HELP)] = None,  # noqa: UP045
    audit_block: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Saved Agentic Audit Storage block holding the runs' logs (default: as the runs use).")] = None,
) -> None:
    """List in-flight runs (paused, suspended, awaiting retry) with their pinned versions, and say which
    the target pack would stop under their upgrade policy. Exit 1 when any would stop."""
    from prefect_agentic.blocks.audit_storage import AuditStorage
    from prefect_agentic.blocks.sandbox_settings import SandboxSettings
    from prefect_agentic.errors import SandboxError
    from prefect_agentic.record.store import AuditStore
    from prefect_agentic.sandbox.runner import inspect_image
    from prefect_agentic.upgrade_check import in_flight_runs, installed_pack, pack_at

    settings = SandboxSettings()

    def image_exists(ref: str) -> bool | None:
        try:
            return inspect_image(settings, ref) is not None
        except SandboxError:
            return None

    try:
        target = pack_at(tools_from) if tools_from else installed_pack()
        store = AuditStore(AuditStorage.configured(audit_block))
    except (AgenticError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    runs = in_flight_runs(store, target, image_exists)
    typer.echo(f"target: prefect-agentic {target.version} ({target.where})")
    if not runs:
        typer.echo("no in-flight runs (paused, suspended or awaiting retry)")
    for run in runs:
        pinned = (f"pack {run.pins.pack}, tools "
                  + (", ".join(f"{n} {v}" for n, v in sorted(run.pins.tools.items())) or "none")
                  + (f", image {run.pins.image_id[:19]}" if run.pins.image_id else "")) if run.pins else "unknown"
        typer.echo(f"{run.flow_run_id}  {run.name}  [{run.state}]  policy {run.policy}: {run.verdict.upper()}")
        typer.echo(f"  pinned: {pinned}")
        for switch in run.switches:
            typer.echo(f"  - {switch.text()}")
        if run.note:
            typer.echo(f"  {run.note}")
    stopping = sum(run.verdict == "stops" for run in runs)
    typer.echo(f"{len(runs)} in-flight run(s); {stopping} would stop under their upgrade policy")
    raise typer.Exit(1 if stopping else 0)


def retry(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Flow run id (or its start).")],
    on_upgrade: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="pinned or upgrade: the run's upgrade policy from now on (default: unchanged).")] = None,
) -> None:
    """Start a failed or crashed deployed run again (a worker of its pool picks it up): completed steps
    come from the cache; with --on-upgrade upgrade, a run stopped by its pins goes on with the installed versions."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import AwaitingRetry

    from prefect_agentic.blocks.audit_storage import AuditStorage
    from prefect_agentic.cli.runs import audited_run_id
    from prefect_agentic.record.store import AuditStore

    if on_upgrade not in (None, "pinned", "upgrade"):
        _fail(f"--on-upgrade {on_upgrade}: give pinned or upgrade")
    try:
        run_id = UUID(audited_run_id(AuditStore(AuditStorage.configured()), run_ref))
    except AgenticError as exc:
        _fail(str(exc))
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
        state = flow_run.state
        if flow_run.deployment_id is None:
            _fail(f"flow run {run_id} was not started from a deployment, so no worker can start it again; "
                  "run the plan again with `agentic run` (completed steps come from the cache)")
        if state is None or not (state.is_failed() or state.is_crashed()):
            _fail(f"flow run {run_id} is {state.name if state else 'without a state'}, not Failed or Crashed: "
                  "only a run that ended without finishing is retried")
        if on_upgrade is not None:
            client.update_flow_run(run_id, parameters={**flow_run.parameters, "on_upgrade": on_upgrade})
        client.set_flow_run_state(run_id, AwaitingRetry(), force=True)
    policy = on_upgrade or (flow_run.parameters or {}).get("on_upgrade") or "pinned"
    typer.echo(f"flow run {run_id} ({flow_run.name}) is scheduled again (AwaitingRetry), upgrade policy "
               f"{policy}: a worker of its deployment's pool starts it")


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("upgrade-check")(upgrade_check)
    app.command()(retry)
