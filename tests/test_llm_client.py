"""The chat-completions client against a real local HTTP server with scripted answers."""

from __future__ import annotations

import socket
import time

import pytest
from llm_server import API_KEY, ListRecorder, Scripted
from pydantic import SecretStr

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.errors import LLMRequestError, LLMTimeoutError, LLMUnavailableError
from prefect_agentic.llm.client import LLMClient


def endpoint(server, **kwargs) -> LLMEndpoint:  # type: ignore[no-untyped-def]
    settings = {"base_url": server.base_url, "model": "scripted-1", "api_key": SecretStr(API_KEY),
                "retry_backoff_seconds": 0.01, "prompt_price_per_1k": 0.5,
                "completion_price_per_1k": 1.5, **kwargs}
    return LLMEndpoint(**settings)


def test_a_completion_returns_the_reply_and_charges_its_priced_usage(llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.reply('{"ok": true}')
    recorder = ListRecorder()
    client = LLMClient(endpoint(llm_server), purpose="plan", recorder=recorder, step_id="s1")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    completion = client.complete([{"role": "user", "content": "x" * 400}], json_schema=schema,
                                 schema_name="flag")
    assert completion.content == '{"ok": true}' and completion.finish_reason == "stop"
    request = llm_server.seen[0]
    assert request.authorization == f"Bearer {API_KEY}"
    assert request.body["model"] == "scripted-1" and request.body["temperature"] == 0.0
    assert request.body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "flag", "schema": schema, "strict": False}}
    reported = request.usage
    assert reported == {"prompt_tokens": 100, "completion_tokens": 3, "total_tokens": 103}
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (100, 3)
    assert completion.usage.cost == pytest.approx(100 / 1000 * 0.5 + 3 / 1000 * 1.5)
    assert client.usage == completion.usage
    assert recorder.records == [("budget", {
        "source": "llm", "purpose": "plan", "endpoint": llm_server.base_url, "model": "scripted-1",
        "prompt_tokens": 100, "completion_tokens": 3, "cost": completion.usage.cost}, "s1")]


def test_usage_adds_up_over_calls(llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.reply("first answer").reply("second")
    client = LLMClient(endpoint(llm_server), purpose="patch")
    one = client.complete([{"role": "user", "content": "a" * 40}]).usage
    two = client.complete([{"role": "user", "content": "b" * 80}]).usage
    assert client.usage.calls == 2
    assert client.usage.total_tokens == one.total_tokens + two.total_tokens == 10 + 3 + 20 + 1
    assert client.usage.cost == pytest.approx(one.cost + two.cost)


def test_429_is_retried_after_the_servers_retry_after_and_then_succeeds(llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.fail(429, "slow down", headers={"Retry-After": "0.2"}).reply("fine")
    client = LLMClient(endpoint(llm_server, retry_backoff_seconds=120), purpose="plan")
    started = time.monotonic()
    assert client.complete([{"role": "user", "content": "hi"}]).content == "fine"
    # Retry-After (0.2 s) won over the 120 s backoff; the upper bound holds on a loaded machine
    assert 0.2 <= time.monotonic() - started < 60
    assert len(llm_server.seen) == 2 and client.usage.calls == 1


def test_500s_are_retried_a_bounded_number_of_times_then_fail_naming_the_endpoint(llm_server) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        llm_server.fail(500, "model overloaded")
    llm_server.reply("never reached")
    client = LLMClient(endpoint(llm_server, max_retries=2), purpose="plan")
    with pytest.raises(LLMUnavailableError) as caught:
        client.complete([{"role": "user", "content": "hi"}])
    message = str(caught.value)
    assert f"LLM endpoint {llm_server.base_url} (model scripted-1)" in message
    assert "3 attempt(s)" in message and "HTTP 500: model overloaded" in message
    assert len(llm_server.seen) == 3 and client.usage.calls == 0
    assert caught.value.retryable


def test_a_slow_answer_is_a_clear_timeout_without_retries(llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.reply("too late", delay=30)
    client = LLMClient(endpoint(llm_server, timeout_seconds=0.3), purpose="plan")
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError, match=r"did not answer within 0.3s .*raise timeout_seconds"):
        client.complete([{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 20  # abandoned long before the 30 s answer, even on a busy machine
    assert len(llm_server.seen) == 1


def test_a_refused_request_is_not_retried_and_quotes_the_server(llm_server) -> None:  # type: ignore[no-untyped-def]
    client = LLMClient(endpoint(llm_server, api_key=SecretStr("wrong")), purpose="plan")
    with pytest.raises(LLMRequestError, match="refused the request with HTTP 401: invalid api key"):
        client.complete([{"role": "user", "content": "hi"}])
    assert len(llm_server.seen) == 1


def test_an_answer_that_is_not_a_chat_completion_is_a_request_error(llm_server) -> None:  # type: ignore[no-untyped-def]
    llm_server.script.append(Scripted(raw_body="<html>proxy</html>"))
    llm_server.script.append(Scripted(raw_body='{"choices": []}'))
    client = LLMClient(endpoint(llm_server), purpose="plan")
    with pytest.raises(LLMRequestError, match="not a chat completion: <html>proxy</html>"):
        client.complete([{"role": "user", "content": "hi"}])
    with pytest.raises(LLMRequestError, match=r"without choices\[0\].message"):
        client.complete([{"role": "user", "content": "hi"}])


def test_a_closed_port_is_retried_then_reported_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = LLMEndpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1,
                       retry_backoff_seconds=0.01)
    with pytest.raises(LLMUnavailableError, match=r"2 attempt\(s\).*cannot connect"):
        LLMClient(dead, purpose="plan").complete([{"role": "user", "content": "hi"}])
