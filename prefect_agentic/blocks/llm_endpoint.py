"""Which language model the LLM planner and ``propose_patch`` talk to: the LLM endpoint block.

Any server that speaks the OpenAI-compatible chat-completions API works (a
hosted service, vLLM, llama.cpp's server, Ollama's compatibility endpoint).
The key is a ``SecretStr``: Prefect stores it encrypted and never shows it in
the UI or in flow run parameters.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from prefect_agentic.blocks.branding import documentation_url, logo_url
from prefect_agentic.concurrency import rate_limit_name


class LLMEndpoint(Block):
    """An OpenAI-compatible chat-completions endpoint, its model, limits and prices."""

    _block_type_name = "Agentic LLM Endpoint"
    _block_type_slug = "agentic-llm-endpoint"
    _logo_url = logo_url("agentic-llm-endpoint")  # type: ignore[assignment]
    _documentation_url = documentation_url("agentic-llm-endpoint")  # type: ignore[assignment]
    _description = (
        "OpenAI-compatible chat-completions endpoint for prefect-agentic's LLM planner and "
        "propose_patch tool: base URL, model, API key, timeout, retries and token prices."
    )

    base_url: str = Field(
        description=(
            "Base URL up to and including the API version; the client posts to "
            "{base_url}/chat/completions (e.g. https://api.openai.com/v1)."
        ),
    )
    model: str = Field(description="Model name sent with every request.")
    api_key: SecretStr | None = Field(
        default=None, description="Sent as 'Authorization: Bearer <key>'; empty sends none."
    )
    timeout_seconds: float = Field(
        default=120, gt=0, description="How long one request may take before it is abandoned."
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Further attempts after a 429, a 5xx or a refused connection (with backoff).",
    )
    retry_backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Delay before the first retry; doubles for each further retry "
        "(a Retry-After header from the server wins, up to 60 s).",
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

    def rate_limit_name(self) -> str:
        """The Prefect rate limit of this endpoint: one per saved block (or per model)."""
        return rate_limit_name("llm", getattr(self, "_block_document_name", None) or self.model)

    def label(self) -> str:
        """How errors name this endpoint: the saved block's name, else the URL and model."""
        name = getattr(self, "_block_document_name", None)
        where = f"LLM endpoint block '{name}'" if name else f"LLM endpoint {self.base_url}"
        return f"{where} (model {self.model})"
