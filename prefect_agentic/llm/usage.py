"""Token usage of model calls, priced from the endpoint block's token prices.

Every request's usage is recorded (kind ``budget``, ``source: llm``) and
added to its session's running total, so a budget can charge what a plan or
a patch cost and ``agentic stats`` can sum it. An answer read from the cache
of durable calls cost nothing this time and is not charged again.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_ai.usage import RequestUsage


class LLMUsage(BaseModel):
    """Tokens and their price for one call, or summed over many."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return LLMUsage(
            calls=self.calls + other.calls,
            cached_calls=self.cached_calls + other.cached_calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=round(self.cost + other.cost, 8),
        )


def priced_usage(usage: RequestUsage, prompt_price_per_1k: float, completion_price_per_1k: float,
                 *, cached: bool = False) -> LLMUsage:
    """One request's usage as pydantic-ai reports it, priced; a cached answer costs nothing."""
    if cached:
        return LLMUsage(calls=1, cached_calls=1)
    prompt, completion = usage.input_tokens, usage.output_tokens
    cost = prompt / 1000 * prompt_price_per_1k + completion / 1000 * completion_price_per_1k
    return LLMUsage(calls=1, prompt_tokens=prompt, completion_tokens=completion, cost=round(cost, 8))
