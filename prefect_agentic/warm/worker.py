"""``agentic worker``: Prefect's process worker, launching flow runs through the warm process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from prefect.logging import get_logger
from prefect.utilities.processutils import command_to_string, get_sys_executable
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker

from prefect_agentic.gates.form_copy import FORM_CHECK_SECONDS, restore_lost_forms

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.schemas.objects import Flow as APIFlow
    from prefect.client.schemas.objects import FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse

LAUNCH_MODULE = "prefect_agentic.warm.launch"


class WarmProcessJobConfiguration(ProcessJobConfiguration):
    """A process job whose default command is the warm launcher (a command the pool or the
    deployment sets is kept as it is)."""

    def prepare_for_flow_run(
        self,
        flow_run: FlowRun,
        deployment: DeploymentResponse | None = None,
        flow: APIFlow | None = None,
        work_pool: WorkPool | None = None,
        worker_name: str | None = None,
        worker_id: UUID | None = None,
    ) -> None:
        super().prepare_for_flow_run(flow_run, deployment, flow, work_pool, worker_name, worker_id=worker_id)
        if not self._command_configured:
            self.command = command_to_string([get_sys_executable(), "-m", LAUNCH_MODULE])
            self._command_configured = True


async def serve_pool(pool: str, name: str | None = None, limit: int | None = None, **options: Any) -> None:
    """Serve ``pool`` until stopped, like ``prefect worker start --type process``, with warm starts.

    The worker is Prefect's own ``ProcessWorker``; only its job configuration
    differs, so the pool stays of type ``process`` and any process worker can
    serve it next to this one.
    """
    worker = ProcessWorker(work_pool_name=pool, name=name, limit=limit, **options)
    worker.job_configuration = WarmProcessJobConfiguration
    async with anyio.create_task_group() as group:
        group.start_soon(restore_lost_forms_of, pool)
        await worker.start()
        group.cancel_scope.cancel()


async def restore_lost_forms_of(pool: str) -> None:
    """Every ``FORM_CHECK_SECONDS``, put back the approval forms its pool's suspended runs lost.

    A run whose process died while suspending cannot be answered in the
    Prefect UI until its form is back (``prefect_agentic.gates.form_copy``);
    the worker that would start it again is the one place that is always
    running for an approver who only uses the UI.
    """
    logger = get_logger("prefect_agentic.worker")
    while True:
        await anyio.sleep(FORM_CHECK_SECONDS)
        try:
            restored = await anyio.to_thread.run_sync(restore_lost_forms, pool)
        except Exception as exc:  # noqa: BLE001 - an unreachable API now is retried at the next check
            logger.warning("could not check the suspended runs of pool %r for lost approval forms: %s", pool, exc)
            continue
        for flow_run_id in restored:
            logger.warning("flow run %s: its process ended before Prefect saved the approval form; restored it "
                           "from the gate's copy, so it can be answered in the UI", flow_run_id)
