"""Asking a model for JSON that must pass our own checks, with the errors fed back.

A schema in ``response_format`` narrows what a model writes but proves
nothing: servers ignore it, models cut answers off, and meaning (a tool that
exists, a graph without cycles) is beyond any JSON Schema. So each answer is
parsed and checked here; when it fails, the answer and a list of its problems
go back to the model and it tries again, a bounded number of times.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from prefect_agentic.errors import LLMOutputError
from prefect_agentic.llm.client import Completion, LLMClient, Message, current_logger

T = TypeVar("T")


class InvalidAnswer(Exception):
    """Raised by an ``accept`` function: the answer has these problems (fed back to the model)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def ask_for_json(
    client: LLMClient,
    messages: Sequence[Message],
    *,
    schema: Mapping[str, Any],
    schema_name: str,
    accept: Callable[[Any], T],
    attempts: int,
    what: str,
) -> T:
    """The first answer that parses as JSON and that ``accept`` turns into a value.

    Raises ``LLMOutputError`` with the last answer's problems after ``attempts`` answers.
    """
    conversation = list(messages)
    problems: list[str] = []
    for attempt in range(1, attempts + 1):
        completion = client.complete(conversation, json_schema=schema, schema_name=schema_name)
        try:
            return accept(json_answer(completion))
        except InvalidAnswer as exc:
            problems = exc.problems
        current_logger().warning("%s: answer %d of %d is not a valid %s: %s", client.endpoint.label(),
                          attempt, attempts, what, "; ".join(problems))
        conversation += [
            {"role": "assistant", "content": completion.content},
            {"role": "user", "content": feedback(problems)},
        ]
    raise LLMOutputError(
        f"{client.endpoint.label()} gave no valid {what} in {attempts} answer(s); "
        "problems of the last one", problems,
    )


def json_answer(completion: Completion) -> Any:
    """The reply as JSON (a Markdown code fence around it is tolerated)."""
    text = completion.content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    if not text.strip():
        raise InvalidAnswer(["the answer was empty; reply with one JSON object"])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        if completion.finish_reason == "length":
            problem += "; the answer was cut off at the token limit, so make it shorter"
        raise InvalidAnswer([problem]) from None


def feedback(problems: list[str]) -> str:
    lines = "\n".join(f"- {p}" for p in problems)
    return (
        "Your answer cannot be used. Problems:\n"
        f"{lines}\n"
        "Reply again with the complete corrected JSON object only, no prose."
    )
