"""Durable model calls: each model request is a Prefect task cached on its full input.

pydantic-ai's Prefect integration (``PrefectModel``) turns a model request
into a Prefect task; its default cache policy is scoped to one flow run, so a
resumed run (a new flow run after a crash, or a suspended run started again)
would ask the model again, pay again, and may get a different answer. Ours
keys a request on everything that decides the answer and nothing else: the
endpoint (provider, model, base URL, temperature), the messages without
their timestamps and run ids, the model settings and the request parameters
(output schema, tools). The answer is a persisted result, so any later run
that sends the same request reads it instead of calling the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import FlowRunContext, TaskRunContext
from prefect.settings import PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings
from pydantic_ai.durable_exec.prefect import PrefectModel, TaskConfig
from pydantic_ai.durable_exec.prefect._cache_policies import PrefectAgentInputs
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

CACHE_KEY_PREFIX = "agentic-model-"

OnResponse = Callable[[list[ModelMessage], ModelResponse, bool], None]
"""Called after every request with (messages, response, answered from the cache)."""


@dataclass
class EndpointRequestKey(CachePolicy):
    """Cache key of one model request: the endpoint's identity and the request's full input."""

    endpoint: dict[str, Any] = field(default_factory=dict)

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        request = PrefectAgentInputs().compute_key(task_ctx, inputs, flow_parameters, **kwargs)
        if request is None:
            return None
        payload = json.dumps({"endpoint": self.endpoint, "request": request}, sort_keys=True)
        return CACHE_KEY_PREFIX + hashlib.sha256(payload.encode()).hexdigest()


class DurableModel(PrefectModel):
    """``PrefectModel`` with our cross-run cache key, telling ``on_response`` about every answer."""

    def __init__(self, model: Model, *, endpoint: dict[str, Any], on_response: OnResponse,
                 refresh: bool = False) -> None:
        config = TaskConfig(cache_policy=EndpointRequestKey(endpoint=endpoint), persist_result=True,
                            retries=0)
        super().__init__(model, task_config=config, get_event_stream_handler=lambda: None)
        self._on_response = on_response
        self._refresh = refresh

    async def request(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                      model_request_parameters: ModelRequestParameters) -> ModelResponse:
        task = self._wrapped_request.with_options(
            name=f"model-request: {self.wrapped.model_name}", refresh_cache=self._refresh,
            **self.task_config)
        with _logs_kept_local_outside_a_flow_run():
            state = await task(messages, model_settings, model_request_parameters, return_state=True)
        response = await state.aresult()  # raises the request's own error if it failed
        self._on_response(messages, response, state.name == "Cached")
        return response


@contextmanager
def _logs_kept_local_outside_a_flow_run() -> Iterator[None]:
    """Outside a flow run (``agentic run --goal``, ``agentic draft``) the request's task run has no
    flow run to file its logs under, and Prefect's API log handler would print a ``UserWarning``
    about that next to the pack's own error when the request fails. Those logs still reach the
    console; only the API, which cannot take them, does without.
    """
    if FlowRunContext.get() is not None:
        yield
        return
    with temporary_settings({PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
        yield


class RecordingModel(WrapperModel):
    """A model used as it is (``durable: false``), telling ``on_response`` about every answer."""

    def __init__(self, model: Model, on_response: OnResponse) -> None:
        super().__init__(model)
        self._on_response = on_response

    async def request(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                      model_request_parameters: ModelRequestParameters) -> ModelResponse:
        response = await super().request(messages, model_settings, model_request_parameters)
        self._on_response(messages, response, False)
        return response
