"""``agentic recipes`` and ``agentic plan``: the recipe planner from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from prefect_agentic.plan.loader import dump_plan
from prefect_agentic.planners.recipes import RECIPES, RecipeError, RecipePlanner, parse_assignments

err = Console(stderr=True)


def recipes() -> None:
    """List the recipes and their parameters."""
    for recipe in RECIPES.values():
        typer.echo(f"{recipe.name}  {recipe.goal}")
        for name, default, description in recipe.parameters():
            typer.echo(f"  --param {name + '=' + default:<28} {description}")
    typer.echo("Write a plan: agentic plan RECIPE --param NAME=VALUE -o plan.yaml")


def plan(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `agentic recipes`).")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="NAME=VALUE (VALUE read as YAML).")] = [],  # noqa: B006
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the plan here.")] = None,  # noqa: UP045
) -> None:
    """Write the plan a recipe makes, for review before `agentic run`."""
    try:
        made = RecipePlanner().plan(recipe, parse_assignments(param))
    except RecipeError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    text = dump_plan(made)
    if output:
        output.write_text(text)
        err.print(f"wrote {output} ({len(made.steps)} steps)")
    else:
        typer.echo(text, nl=False)


def register(app: typer.Typer) -> None:
    app.command()(recipes)
    app.command()(plan)
