"""The work pools the deployments of ``prefect.yaml`` use, created when missing.

``agentic-process`` runs each flow run as a process of the worker's machine;
``agentic-docker`` (prefect-docker's worker) runs each flow run in a container.
An existing pool is left as it is: an operator may have tuned its template.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

PROCESS_POOL = "agentic-process"
DOCKER_POOL = "agentic-docker"
POOLS = {PROCESS_POOL: "process", DOCKER_POOL: "docker"}


def ensure_work_pools(pools: dict[str, str] = POOLS) -> dict[str, str]:
    """Create each pool (name → worker type) that does not exist; returns name → outcome."""
    outcome = {}
    with get_client(sync_client=True) as client:
        for name, kind in pools.items():
            try:
                client.read_work_pool(name)
                outcome[name] = "kept"
                continue
            except ObjectNotFound:
                pass
            template = run_coro_as_sync(get_default_base_job_template_for_infrastructure_type(kind))
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type=kind, base_job_template=template or {}))
                outcome[name] = "created"
            except ObjectAlreadyExists:
                outcome[name] = "kept"
    return outcome
