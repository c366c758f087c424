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


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
