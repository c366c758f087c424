"""``agentic worker``: serve a process work pool with warm flow-run starts."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from prefect_agentic.work_pools import PROCESS_POOL


def worker(
    pool: Annotated[str, typer.Option(help="The process work pool to serve.")] = PROCESS_POOL,
    name: Annotated[Optional[str], typer.Option(help="Worker name shown in the UI (default: Prefect's).")] = None,  # noqa: UP045
    limit: Annotated[Optional[int], typer.Option(min=1, help="Flow runs this worker runs at once.")] = None,  # noqa: UP045
) -> None:
    """Serve a process work pool like `prefect worker start`, starting flow runs warm.

    Each flow run is forked from a process that already imported Prefect and the
    pack (started with the worker's first run, ended with the worker), so a run
    resumed after an approval starts in well under a second of CPU instead of
    several. Stop it with Ctrl-C.
    """
    import anyio

    from prefect_agentic.warm.worker import serve_pool

    anyio.run(serve_pool, pool, name, limit)


def task_worker(
    limit: Annotated[int, typer.Option(min=1, help="Steps this worker runs at once.")] = 1,
) -> None:
    """Serve plan steps of runs started with `--steps-on task-workers` (a Prefect task worker).

    Each step's input snapshot is fetched from the snapshot remote
    (AGENTIC_SNAPSHOT_REMOTE names it for the flow run; the step carries it),
    run in this machine's sandbox under this worker's AGENTIC_HOME, and its
    output snapshot pushed back. Needs PREFECT_API_URL (a Prefect server) and
    the result storage the flow runs use. Stop it with Ctrl-C.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.task_worker import serve

    from prefect_agentic.tasks.remote_step import run_step_on_worker

    if not PREFECT_API_URL.value():
        typer.echo("agentic task-worker needs a Prefect server: set PREFECT_API_URL", err=True)
        raise typer.Exit(2)
    serve(run_step_on_worker, limit=limit)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("task-worker")(task_worker)
