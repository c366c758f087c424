"""Language models through pydantic-ai: the endpoint's model, durable calls, usage and records."""

from prefect_agentic.llm.session import ModelSession
from prefect_agentic.llm.usage import LLMUsage

__all__ = ["LLMUsage", "ModelSession"]
