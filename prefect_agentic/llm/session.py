"""One purpose's use of an endpoint: the pydantic-ai model it calls, what that cost, the record.

A session hands an agent its model (durable unless the block says not) and
records every answer: a ``model_call`` record with the response itself (so
``agentic replay`` can re-make the decisions without a model) and, for an
answer that cost tokens, a ``budget`` record (``source: llm``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from openai import APIConnectionError, APITimeoutError
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelRequestTimeout,
    ModelServerError,
    ModelTimeoutError,
    ModelUnavailableError,
    UnexpectedModelBehavior,
)
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse
from pydantic_ai.models import Model

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.chaos import llm as chaos_llm
from prefect_agentic.errors import (
    LLMOutputError,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
)
from prefect_agentic.llm.durable import DurableModel, RecordingModel
from prefect_agentic.llm.models import RateLimitedModel, provider_model
from prefect_agentic.llm.usage import LLMUsage, priced_usage
from prefect_agentic.record.recorder import LoggingRecorder, Recorder

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def dump_response(response: ModelResponse) -> dict[str, Any]:
    """A response as JSON data (how the audit log keeps it)."""
    return ModelMessagesTypeAdapter.dump_python([response], mode="json")[0]


def load_response(data: Any) -> ModelResponse:
    [response] = ModelMessagesTypeAdapter.validate_python([data])
    assert isinstance(response, ModelResponse)
    return response


class ModelSession:
    """Calls of one purpose (``plan``, ``replan``, ``patch``) to one endpoint, for one step or run."""

    def __init__(self, endpoint: LLMEndpoint, *, purpose: str, recorder: Recorder | None = None,
                 step_id: str | None = None, refresh: bool = False,
                 model: Model | None = None) -> None:
        self.endpoint = endpoint
        self.purpose = purpose
        self.recorder = recorder or LoggingRecorder()
        self.step_id = step_id
        self.refresh = refresh
        self.usage = LLMUsage()
        self._given = model

    def model(self) -> Model:
        """The model to hand an agent: built from the block (or given), wrapped to record.

        In a chaos run with ``llm_malformed`` faults, answers are spoiled on their
        way out of it (after the cache and the record; see ``chaos.llm``).
        """
        return chaos_llm.wrap(self._recorded_model(), self.purpose, self.step_id)

    def _recorded_model(self) -> Model:
        if self._given is not None:
            return RecordingModel(self._given, self._answered)
        model = RateLimitedModel(provider_model(self.endpoint), self.endpoint)
        if not self.endpoint.durable:
            return RecordingModel(model, self._answered)
        return DurableModel(model, endpoint=self.endpoint.identity(), on_response=self._answered,
                            refresh=self.refresh)

    def _answered(self, messages: list[ModelMessage], response: ModelResponse, cached: bool) -> None:
        usage = priced_usage(response.usage, self.endpoint.prompt_price_per_1k,
                             self.endpoint.completion_price_per_1k, cached=cached)
        self.usage = self.usage + usage
        common = {"purpose": self.purpose, "provider": self.endpoint.provider,
                  "endpoint": self.endpoint.base_url, "model": self.endpoint.model}
        self.recorder.record("model_call", {
            **common, "request": len(messages), "cached": cached,
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "cost": usage.cost, "response": dump_response(response),
        }, step_id=self.step_id)
        if not cached:
            self.recorder.record("budget", {
                "source": "llm", **common, "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens, "cost": usage.cost,
            }, step_id=self.step_id)

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """pydantic-ai's and the provider client's errors as ours, naming the endpoint."""
        label = self.endpoint.label()
        try:
            yield
        except ModelHTTPError as exc:
            kind = LLMUnavailableError if exc.status_code in RETRY_STATUSES else LLMRequestError
            raise kind(f"{label} refused the request with HTTP {exc.status_code} (after "
                       f"max_retries={self.endpoint.max_retries}): {_body(exc.body)}") from None
        except (APITimeoutError, ModelTimeoutError, ModelRequestTimeout):
            raise LLMTimeoutError(f"{label} did not answer within {self.endpoint.timeout_seconds:g}s; "
                                  "raise timeout_seconds on the block or check the server") from None
        except (APIConnectionError, ModelConnectionError) as exc:
            raise LLMUnavailableError(f"{label} cannot be reached after max_retries="
                                      f"{self.endpoint.max_retries}: {exc}") from None
        except (ModelRateLimitError, ModelServerError, ModelUnavailableError) as exc:
            raise LLMUnavailableError(f"{label} kept failing after max_retries="
                                      f"{self.endpoint.max_retries}: {exc}") from None
        except ModelAPIError as exc:
            raise LLMRequestError(f"{label} refused the request: {exc}") from None
        except UnexpectedModelBehavior as exc:
            raise LLMOutputError(f"{label} gave no valid {what}: {exc.message}",
                                 [exc.message]) from None


def _body(body: object) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    return str(body)[:300]
