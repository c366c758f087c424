"""A small client of the OpenAI-compatible chat-completions API, over httpx.

One request at a time, bounded retries with exponential backoff for the
answers that say "try again" (429, 5xx, a refused connection), no retry for
a timeout (waiting that long again is rarely what anyone wants: the error
says which setting to raise). Every answer's token usage is priced, added
to ``usage`` and recorded (kind ``budget``) before the content is looked at:
tokens spent on a useless answer are spent all the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.concurrency import wait_for_rate
from prefect_agentic.errors import LLMRequestError, LLMTimeoutError, LLMUnavailableError
from prefect_agentic.llm.usage import LLMUsage, priced_usage
from prefect_agentic.record.recorder import LoggingRecorder, Recorder

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 60.0
Message = Mapping[str, str]


@dataclass(frozen=True)
class Completion:
    """The assistant's reply and what it cost."""

    content: str
    finish_reason: str | None
    usage: LLMUsage


class LLMClient:
    """Talks to one endpoint on behalf of one purpose (``plan``, ``patch``) and step."""

    def __init__(
        self,
        endpoint: LLMEndpoint,
        *,
        purpose: str,
        recorder: Recorder | None = None,
        step_id: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.purpose = purpose
        self.recorder = recorder or LoggingRecorder()
        self.step_id = step_id
        self.usage = LLMUsage()

    def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: Mapping[str, Any] | None = None,
        schema_name: str = "answer",
    ) -> Completion:
        """One chat completion; with ``json_schema`` the reply is asked to be JSON of that schema."""
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": [dict(m) for m in messages],
            "temperature": self.endpoint.temperature,
        }
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": dict(json_schema), "strict": False},
            }
        data = self._post(body)
        finish_reason, content = self._reply(data)
        usage = priced_usage(data.get("usage"), self.endpoint.prompt_price_per_1k,
                             self.endpoint.completion_price_per_1k)
        self._charge(usage)
        return Completion(content=content, finish_reason=finish_reason, usage=usage)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.endpoint
        url = endpoint.base_url.rstrip("/") + "/chat/completions"
        attempts = endpoint.max_retries + 1
        last, wait = "", 0.0
        with httpx.Client(timeout=endpoint.timeout_seconds) as http:
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    current_logger().warning("%s: %s; retrying in %.2fs (attempt %d of %d)",
                                      endpoint.label(), last, wait, attempt, attempts)
                    time.sleep(wait)
                if endpoint.requests_per_minute:
                    wait_for_rate(endpoint.rate_limit_name(), endpoint.requests_per_minute)
                try:
                    response = http.post(url, json=body, headers=self._headers())
                except httpx.TimeoutException:
                    raise LLMTimeoutError(
                        f"{endpoint.label()} did not answer within {endpoint.timeout_seconds:g}s "
                        f"(POST {url}); raise timeout_seconds on the block or check the server"
                    ) from None
                except httpx.TransportError as exc:
                    last, wait = f"cannot connect ({exc})", self._backoff(attempt, None)
                    continue
                if response.status_code in RETRY_STATUSES:
                    last = f"HTTP {response.status_code}: {_excerpt(response)}"
                    wait = self._backoff(attempt, response.headers.get("retry-after"))
                    continue
                if response.is_error:
                    raise LLMRequestError(
                        f"{endpoint.label()} refused the request with HTTP {response.status_code}: "
                        f"{_excerpt(response)}"
                    )
                return self._json(response)
        raise LLMUnavailableError(
            f"{endpoint.label()} gave no answer in {attempts} attempt(s) (max_retries="
            f"{endpoint.max_retries}); last: {last}"
        )

    def _headers(self) -> dict[str, str]:
        key = self.endpoint.api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        try:
            asked = float(retry_after) if retry_after is not None else None
        except ValueError:
            asked = None  # an HTTP date: fall back to our own backoff
        if asked is not None and asked >= 0:
            return min(asked, MAX_RETRY_AFTER_SECONDS)
        return self.endpoint.retry_backoff_seconds * 2 ** (attempt - 1)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise LLMRequestError(
                f"{self.endpoint.label()} answered HTTP {response.status_code} with something "
                f"that is not a chat completion: {_excerpt(response)}"
            )
        return data

    def _reply(self, data: dict[str, Any]) -> tuple[str | None, str]:
        choices = data.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            raise LLMRequestError(
                f"{self.endpoint.label()} answered without choices[0].message: {str(data)[:300]}"
            )
        content = message.get("content")
        return first.get("finish_reason"), content if isinstance(content, str) else ""

    def _charge(self, usage: LLMUsage) -> None:
        self.usage = self.usage + usage
        self.recorder.record(
            "budget",
            {"source": "llm", "purpose": self.purpose, "endpoint": self.endpoint.base_url,
             "model": self.endpoint.model, "prompt_tokens": usage.prompt_tokens,
             "completion_tokens": usage.completion_tokens, "cost": usage.cost},
            step_id=self.step_id,
        )


def _excerpt(response: httpx.Response, limit: int = 300) -> str:
    """The server's error message if it sent an OpenAI-style error, else the start of the body."""
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:limit]
    except (ValueError, AttributeError):
        pass
    return response.text[:limit].strip() or "(empty body)"


def current_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("prefect_agentic.llm")
