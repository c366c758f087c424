"""The agent loop: a failed step leads to a revised plan (re-plan) or a human's decision (escalate)."""

from prefect_agentic.loop.agent import AgentLoop
from prefect_agentic.loop.settings import LoopSettings

__all__ = ["AgentLoop", "LoopSettings"]
