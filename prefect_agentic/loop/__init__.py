"""The agent loop: a failed step leads to a revised plan (re-plan) or a human's decision (escalate).

``AgentLoop`` is imported on first use: it pulls in the LLM planner (pydantic-ai), which a
flow-run process without an LLM in its loop never needs (a resumed run's start-up pays it).
"""

from typing import TYPE_CHECKING, Any

from prefect_agentic.loop.settings import LoopSettings

if TYPE_CHECKING:
    from prefect_agentic.loop.agent import AgentLoop

__all__ = ["AgentLoop", "LoopSettings"]


def __getattr__(name: str) -> Any:
    if name == "AgentLoop":
        from prefect_agentic.loop.agent import AgentLoop

        return AgentLoop
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
