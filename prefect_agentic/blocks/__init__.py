"""Prefect blocks of prefect-agentic (register with `prefect block register -m prefect_agentic.blocks`)."""

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.blocks.sandbox_settings import SandboxSettings

__all__ = ["LLMEndpoint", "SandboxSettings"]
