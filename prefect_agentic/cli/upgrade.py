"""``agentic upgrade-check``: before upgrading workers, which in-flight runs would stop."""

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


def register(app: typer.Typer) -> None:
    app.command("upgrade-check")(upgrade_check)
