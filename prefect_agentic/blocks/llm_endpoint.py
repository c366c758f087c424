"""Which language model the LLM planner and ``propose_patch`` talk to: the LLM endpoint block.

The block names a provider and a model the way pydantic-ai does
(``openai`` + ``gpt-4o``, ``anthropic`` + ``claude-sonnet-4-5``...). With
``provider: openai`` and a ``base_url``, any OpenAI-compatible server works:
vLLM, Ollama's ``/v1``, llama.cpp's server. The API key is a Prefect
``Secret`` block (saved as a reference to it, or inline and encrypted): it is
never shown in the UI or in flow run parameters.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from pydantic import Field, SecretStr, field_validator

from prefect_agentic.blocks.branding import documentation_url, logo_url
from prefect_agentic.blocks.registration import RegisteredBySlug
from prefect_agentic.concurrency import rate_limit_name


class LLMEndpoint(RegisteredBySlug, Block):
    """A model at a provider: its name, key, base URL, limits and token prices."""

    _block_type_name = "Agentic LLM Endpoint"
    _block_type_slug = "agentic-llm-endpoint"
    _logo_url = logo_url("agentic-llm-endpoint")  # type: ignore[assignment]
    _documentation_url = documentation_url("agentic-llm-endpoint")  # type: ignore[assignment]
    _description = (
        "Model for prefect-agentic's LLM planner, agent loop and propose_patch tool: provider, "
        "model, API key (a Secret block), base URL for local servers, timeout, retries and prices."
    )

    provider: str = Field(
        default="openai",
        description=(
            "pydantic-ai provider name: openai (also any OpenAI-compatible server by base_url, "
            "e.g. vLLM or Ollama), anthropic, google-gla, bedrock, groq, mistral, ... "
            "Providers other than openai need their pydantic-ai-slim extra installed."
        ),
    )
    model: str = Field(description="Model name at the provider (e.g. gpt-4o, llama3.1:8b).")
    base_url: str | None = Field(
        default=None,
        description=(
            "Base URL up to and including the API version, for a local or proxied server "
            "(e.g. http://127.0.0.1:8000/v1 for vLLM, http://127.0.0.1:11434/v1 for Ollama). "
            "Empty: the provider's own API."
        ),
    )
    api_key: Secret | None = Field(
        default=None,
        description="A Secret block holding the API key; empty sends none (local servers).",
    )
    timeout_seconds: float = Field(
        default=120, gt=0, description="How long one request may take before it is abandoned."
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Further attempts after a 429, a 5xx or a refused connection (with backoff; "
        "a Retry-After header from the server is honoured).",
    )
    temperature: float = Field(default=0.0, ge=0, le=2, description="Sampling temperature.")
    prompt_price_per_1k: float = Field(
        default=0.0, ge=0, description="Price of 1,000 prompt tokens (in your budget's currency)."
    )
    completion_price_per_1k: float = Field(
        default=0.0, ge=0, description="Price of 1,000 completion tokens (same currency)."
    )
    requests_per_minute: float | None = Field(
        default=None, gt=0,
        description=(
            "Calls per minute to this endpoint from all runs on all workers together, through "
            "the Prefect rate limit `agentic-llm-<block name or model>` (created on demand). "
            "Empty: not limited."
        ),
    )
    durable: bool = Field(
        default=True,
        description=(
            "Each model request is a Prefect task cached on its full input (persisted result), "
            "so a resumed or re-run flow gets the earlier answer instead of asking again."
        ),
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> Any:
        """A plain string or ``SecretStr`` becomes an inline (unsaved) Secret block."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return Secret(value=value) if value else None
        return value

    def api_key_value(self) -> str | None:
        return self.api_key.get() if self.api_key is not None else None

    def identity(self) -> dict[str, Any]:
        """What makes two endpoints answer differently: part of every model call's cache key."""
        return {"provider": self.provider, "model": self.model, "base_url": self.base_url,
                "temperature": self.temperature}

    def rate_limit_name(self) -> str:
        """The Prefect rate limit of this endpoint: one per saved block (or per model)."""
        return rate_limit_name("llm", getattr(self, "_block_document_name", None) or self.model)

    def label(self) -> str:
        """How errors name this endpoint: the saved block's name, else the URL and model."""
        name = getattr(self, "_block_document_name", None)
        where = (f"LLM endpoint block '{name}'" if name
                 else f"LLM endpoint {self.base_url or self.provider}")
        return f"{where} (model {self.model})"
