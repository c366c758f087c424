"""Prefect blocks of prefect-agentic (register with `prefect block register -m prefect_agentic.blocks`)."""

from prefect_agentic.blocks.sandbox_settings import SandboxSettings

__all__ = ["SandboxSettings"]
