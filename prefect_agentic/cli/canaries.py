"""``agentic canaries``: the local service stacks and whatever environments runs left behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import docker
import typer
from rich.console import Console
from rich.markup import escape

from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.environments.images import build_service_image, service_files
from prefect_agentic.environments.labels import (
    EPHEMERAL,
    STACK,
    environments,
    owner_is_gone,
    remove_environment,
)
from prefect_agentic.environments.stack import Stack
from prefect_agentic.errors import AgenticError

canaries_app = typer.Typer(help="Service stacks, their canaries, and leftover environments.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _client() -> docker.DockerClient:
    return docker.from_env()


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


@canaries_app.command("up")
def up(name: str,
       source: Annotated[Path, typer.Option("--from", help="The service's directory (its stable version).")] = Path("."),
       traffic: Annotated[float, typer.Option(help="Requests per second of the local traffic generator (0: none).")] = 20,
       total: Annotated[int, typer.Option(help="The traffic generator stops after this many requests.")] = 100_000,
       ) -> None:
    """Start the stack NAME: cache, two stable replicas of the service in --from, HAProxy, traffic."""
    client = _client()
    try:
        image, _ = build_service_image(client, service_files(WorkspaceFiles(source.absolute()), "."))
        state = Stack(client, name).up(image, loadgen_rate=traffic or None, loadgen_total=total)
    except AgenticError as exc:
        raise _fail(str(exc)) from None
    out.print(f"stack {name}: stable {state.stable_version}, proxy {state.proxy_url}", highlight=False, soft_wrap=True)


@canaries_app.command("status")
def status(name: str) -> None:
    """The stack's stable version, canary and canary share (JSON)."""
    try:
        state = Stack(_client(), name).state()
    except AgenticError as exc:
        raise _fail(str(exc)) from None
    out.print_json(json.dumps(state.__dict__))


@canaries_app.command("rollback")
def rollback(name: str) -> None:
    """Give all traffic back to the stable replicas and remove the canary (never needs approval)."""
    try:
        removed = Stack(_client(), name).rollback()
    except AgenticError as exc:
        raise _fail(str(exc)) from None
    out.print(f"stack {name}: " + ("canary rolled back" if removed else "no canary; all traffic on stable"))


@canaries_app.command("down")
def down(name: str) -> None:
    """Remove the stack NAME entirely."""
    removed = Stack(_client(), name).down()
    out.print(f"stack {name}: {removed} containers removed")


@canaries_app.command("list")
def list_() -> None:
    """Stacks, and ephemeral environments (a leftover one's run is gone)."""
    client = _client()
    owners = environments(client, EPHEMERAL, with_owner=True)
    for name, containers in sorted(environments(client, STACK).items()):
        stack = Stack(client, name)
        canary = ""
        if stack.container("canary") is not None:
            watched = "orphaned: its run's process is gone" if stack.orphaned_canary() else "its run is alive"
            canary = f", canary at {stack.state().canary_weight} %, {watched}"
        out.print(f"stack      {name}  ({len(containers)} containers{canary})", highlight=False, soft_wrap=True)
    for name, containers in sorted(environments(client, EPHEMERAL).items()):
        left = "leftover" if owner_is_gone(owners.get(name, "")) else "in use"
        out.print(f"ephemeral  {name}  ({len(containers)} containers, {left})", highlight=False)


@canaries_app.command("clean")
def clean(all_: Annotated[bool, typer.Option("--all", help="Also ephemeral environments whose run may be alive.")] = False,
          stacks: Annotated[bool | None, typer.Option("--stacks", help="Also remove every stack.")] = False) -> None:
    """Roll back orphaned canaries (their run's process is gone), remove leftover ephemeral environments
    (and, with --stacks, the stacks)."""
    client = _client()
    for name in sorted(environments(client, STACK)):
        stack = Stack(client, name)
        if not stacks and stack.orphaned_canary() and stack.container("proxy") is not None:
            stack.rollback()
            out.print(f"stack {name}: orphaned canary rolled back; all traffic on stable", highlight=False, soft_wrap=True)
    removed = []
    for name, owner in environments(client, EPHEMERAL, with_owner=True).items():
        if all_ or owner_is_gone(owner):
            remove_environment(client, name)
            removed.append(name)
    if stacks:
        for name in environments(client, STACK):
            remove_environment(client, name)
            removed.append(name)
    out.print(f"removed {len(removed)} environments" + (f": {', '.join(sorted(removed))}" if removed else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(canaries_app, name="canaries")
