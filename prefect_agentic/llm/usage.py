"""Token usage of language-model calls, priced from the endpoint's token prices.

Every call's usage is recorded (kind ``budget``) and added to its client's
running total, so a budget can charge what a plan or a patch cost: read
``LLMClient.usage`` or watch ``budget`` records with ``source: llm``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class LLMUsage(BaseModel):
    """Tokens and their price for one call, or summed over many."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return LLMUsage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=round(self.cost + other.cost, 8),
        )


def priced_usage(reported: Any, prompt_price_per_1k: float, completion_price_per_1k: float) -> LLMUsage:
    """One call's usage from the response's ``usage`` object (absent counts as zero tokens)."""
    usage = reported if isinstance(reported, dict) else {}
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    cost = prompt / 1000 * prompt_price_per_1k + completion / 1000 * completion_price_per_1k
    return LLMUsage(calls=1, prompt_tokens=prompt, completion_tokens=completion, cost=round(cost, 8))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
