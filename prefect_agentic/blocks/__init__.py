"""Prefect blocks of prefect-agentic.

Register every block type on the current Prefect API with
``prefect block register -m prefect_agentic`` (or ``-m prefect_agentic.blocks``).
"""

from prefect_agentic.blocks.audit_storage import AuditStorage
from prefect_agentic.blocks.budget import Budget
from prefect_agentic.blocks.chaos_settings import ChaosSettings
from prefect_agentic.blocks.gate_defaults import GateDefaults
from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.blocks.tool_policy import CommandRule, ToolPolicy

BLOCK_TYPES = ("SandboxSettings", "ToolPolicy", "Budget", "GateDefaults", "LLMEndpoint", "AuditStorage",
               "ChaosSettings")
"""The block types, in the order the blocks reference lists them."""

__all__ = [
    "AuditStorage", "Budget", "ChaosSettings", "CommandRule", "GateDefaults", "LLMEndpoint", "SandboxSettings", "ToolPolicy",
]
