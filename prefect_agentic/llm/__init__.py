"""Language models over the OpenAI-compatible chat-completions API: client, usage, JSON answers."""

from prefect_agentic.llm.client import Completion, LLMClient
from prefect_agentic.llm.usage import LLMUsage

__all__ = ["Completion", "LLMClient", "LLMUsage"]
