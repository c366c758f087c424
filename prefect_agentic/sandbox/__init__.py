"""Running commands in Docker containers: one per step, or one warm container per run."""

from prefect_agentic.sandbox.result import CommandResult
from prefect_agentic.sandbox.runner import Sandbox, open_sandbox

__all__ = ["CommandResult", "Sandbox", "open_sandbox"]
