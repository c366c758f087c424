"""The pydantic-ai model of an LLM endpoint block: provider, model, key, base URL, limits.

``openai`` speaks the OpenAI-compatible chat-completions API, so with a
``base_url`` it also reaches local servers (vLLM, Ollama, llama.cpp). Other
providers (``anthropic``, ``google-gla``, ``bedrock``, ``groq``, ``mistral``...)
are built by pydantic-ai itself and need that provider's extra of
``pydantic-ai-slim`` installed; the error says which.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic_ai import NativeOutput, PromptedOutput, StructuredDict
from pydantic_ai.models import Model, ModelRequestParameters, infer_model
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.providers import infer_provider_class
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.concurrency import wait_for_rate
from prefect_agentic.errors import LLMRequestError

OPENAI_COMPATIBLE = frozenset({"openai", "ollama", "vllm"})


def provider_model(endpoint: LLMEndpoint) -> Model:
    """The endpoint's model as pydantic-ai builds it (no durability, no rate limit)."""
    key = endpoint.api_key_value()
    if endpoint.provider in OPENAI_COMPATIBLE:
        # openai's own client retries 429/5xx/connection errors with backoff (honouring Retry-After)
        http = httpx.AsyncClient(timeout=endpoint.timeout_seconds)
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=endpoint.base_url, api_key=key or "none",
                             max_retries=endpoint.max_retries, timeout=endpoint.timeout_seconds,
                             http_client=http)
        return OpenAIChatModel(endpoint.model, provider=OpenAIProvider(openai_client=client))
    try:
        provider_class = infer_provider_class(endpoint.provider)
    except (ValueError, ImportError) as exc:
        raise LLMRequestError(f"{endpoint.label()}: provider '{endpoint.provider}' is not usable "
                              f"here: {exc}") from None
    kwargs: dict[str, Any] = {}
    if key:
        kwargs["api_key"] = key
    if endpoint.base_url:
        kwargs["base_url"] = endpoint.base_url
    try:
        return infer_model(f"{endpoint.provider}:{endpoint.model}",
                           provider_factory=lambda _: provider_class(**kwargs))
    except (TypeError, ImportError) as exc:
        raise LLMRequestError(f"{endpoint.label()}: cannot build provider '{endpoint.provider}': "
                              f"{exc}") from None


class RateLimitedModel(WrapperModel):
    """Waits for the endpoint's Prefect rate limit before each request that reaches the model."""

    def __init__(self, wrapped: Model, endpoint: LLMEndpoint) -> None:
        super().__init__(wrapped)
        self.endpoint = endpoint

    async def request(self, messages: list[Any], model_settings: ModelSettings | None,
                      model_request_parameters: ModelRequestParameters) -> Any:
        if self.endpoint.requests_per_minute:
            await asyncio.to_thread(wait_for_rate, self.endpoint.rate_limit_name(),
                                    self.endpoint.requests_per_minute)
        return await super().request(messages, model_settings, model_request_parameters)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every local ``#/$defs/NAME`` reference replaced by its definition.

    pydantic-ai inlines ``$defs`` itself, but not under ``if``/``then`` (where the
    plan schema keeps each tool's arguments): a tool argument model with a nested
    model left a dangling reference there. The plan schema has no recursive
    definitions; a recursive one is refused rather than expanded forever.
    """
    defs = schema.get("$defs", {})

    def expand(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [expand(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in seen:
                raise ValueError(f"recursive JSON schema definition '{name}' cannot be inlined")
            siblings = {k: expand(v, seen) for k, v in node.items() if k != "$ref"}
            return {**expand(defs[name], (*seen, name)), **siblings}
        return {k: expand(v, seen) for k, v in node.items() if k != "$defs"}

    return expand(schema, ())


def structured_output(model: Model, schema: dict[str, Any], name: str, description: str) -> Any:
    """JSON of ``schema`` as the answer: the API's json_schema response format where the model
    takes it, else the schema in the instructions (a JSON answer in the text either way)."""
    output = StructuredDict(inline_refs(schema), name=name, description=description)
    profile = model.profile
    native = profile.get("supports_json_schema_output") if isinstance(profile, dict) else getattr(
        profile, "supports_json_schema_output", False)
    return NativeOutput(output) if native else PromptedOutput(output)
