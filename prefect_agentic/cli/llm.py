"""``agentic draft``: the LLM planner from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.errors import LLMError
from prefect_agentic.plan.loader import dump_plan
from prefect_agentic.planners.llm import LLMPlanner

err = Console(stderr=True)
LLM_BLOCK_HELP = "Name of a saved Agentic LLM Endpoint block."


def load_endpoint(option: str, name: str) -> LLMEndpoint:
    """The saved endpoint block, or exit 2 naming the option."""
    try:
        return LLMEndpoint.load(name)
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {option} {escape(name)}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


def draft(
    goal: Annotated[str, typer.Argument(help="What the plan should achieve, in plain words.")],
    llm_block: Annotated[str, typer.Option(help=LLM_BLOCK_HELP)],
    plan_id: Annotated[Optional[str], typer.Option(help="Plan id (default: from the goal).")] = None,  # noqa: UP045
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the plan here.")] = None,  # noqa: UP045
) -> None:
    """Ask an LLM for a plan (validated like a plan file), for review before `agentic run`."""
    planner = LLMPlanner(load_endpoint("--llm-block", llm_block))
    try:
        made = planner.plan(goal, plan_id=plan_id)
    except LLMError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    text = dump_plan(made)
    usage = planner.usage
    cost = f"{usage.total_tokens} tokens in {usage.calls} call(s), cost {usage.cost:g}"
    if output:
        output.write_text(text)
        err.print(f"wrote {output} ({len(made.steps)} steps; {cost})", highlight=False, soft_wrap=True)  # a path is never broken
    else:
        typer.echo(text, nl=False)
        err.print(cost, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(draft)
