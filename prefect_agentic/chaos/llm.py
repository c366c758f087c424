"""``llm_malformed``: a model's answer arrives malformed, where the pack receives model answers.

A chaos run sets ``answer_faults`` (a context variable) around a step's tool
call and around the run's re-planning; ``ModelSession.model()`` asks
``wrap`` for its model, which, when a fault can hit, puts ``MalformedAnswers``
outermost: the real request is made (and cached, recorded as usual), then
the answer the planner or ``propose_patch`` receives is replaced. Being
outside the durable cache, a spoiled answer is never cached: a clean re-run
gets the real one. Selection: ``tools`` matches ``llm.<purpose>``
(``llm.plan``, ``llm.replan``, ``llm.patch``), ``steps`` the step id (the
purpose for the planner), ``attempts`` the answer's number in its session
(``[1]``: the first answer is spoiled, the validation retry gets a good one).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from prefect_agentic.chaos.spec import ChaosSpec, FaultKind
from prefect_agentic.record.recorder import Recorder

_STEP = {"tool": "shell", "args": {"command": "true"}}
MALFORMED = {
    "invalid_json": '{"id": "chaos", "steps": [{"id": "a", "tool": ',
    "schema_violation": json.dumps({"goal": 42, "steps": "not a list", "summary": ["not", "text"]}),
    "empty": "",
    "cycle": json.dumps({"id": "chaos", "goal": "g", "steps": [
        {"id": "a", "depends_on": ["b"], **_STEP}, {"id": "b", "depends_on": ["a"], **_STEP}]}),
}
"""What each mode answers instead of the model (``cycle`` is a well-formed plan whose steps wait on each other)."""


class AnswerFaults:
    """The ``llm_malformed`` faults of ``spec``, recorded to ``recorder`` when they hit."""

    def __init__(self, spec: ChaosSpec, recorder: Recorder) -> None:
        self.spec, self.recorder = spec, recorder

    def spoiler(self, purpose: str, step_id: str | None) -> Callable[[int], str | None] | None:
        """For one session: answer number -> its malformed replacement (None: keep the answer)."""
        tool, step = f"llm.{purpose}", step_id or purpose
        faults = [(i, f) for i, f in enumerate(self.spec.faults) if f.kind is FaultKind.llm_malformed]
        if not faults:
            return None

        def spoil(answer: int) -> str | None:
            for index, fault in faults:
                if fault.selects(tool, step, answer) and self.spec.hits(index, step, answer):
                    mode = fault.pick_mode(self.spec, index, step, answer)
                    self.recorder.record("chaos_fault", {
                        "fault": index, "kind": fault.kind.value, "tool": tool, "attempt": answer,
                        "seed": self.spec.seed, "mode": mode, "answer": MALFORMED[mode]}, step_id=step_id)
                    return MALFORMED[mode]
            return None

        return spoil


answer_faults: ContextVar[AnswerFaults | None] = ContextVar("agentic_answer_faults", default=None)


@contextmanager
def spoiled_answers(spec: ChaosSpec | None, recorder: Recorder) -> Iterator[None]:
    """Model sessions made inside spoil answers as ``spec``'s ``llm_malformed`` faults say (None: none)."""
    token = answer_faults.set(AnswerFaults(spec, recorder)) if spec is not None else None
    try:
        yield
    finally:
        if token is not None:
            answer_faults.reset(token)


class MalformedAnswers(WrapperModel):
    """Counts the answers of a session and replaces those ``spoil`` picks by malformed text."""

    def __init__(self, wrapped: Model, spoil: Callable[[int], str | None]) -> None:
        super().__init__(wrapped)
        self._spoil = spoil
        self._answers = 0

    async def request(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                      model_request_parameters: ModelRequestParameters) -> ModelResponse:
        response = await super().request(messages, model_settings, model_request_parameters)
        self._answers += 1
        text = self._spoil(self._answers)
        return response if text is None else dataclasses.replace(response, parts=[TextPart(text)])


def wrap(model: Model, purpose: str, step_id: str | None) -> Model:
    """``model``, spoiling answers when this thread's chaos run has ``llm_malformed`` faults."""
    faults = answer_faults.get()
    spoil = faults.spoiler(purpose, step_id) if faults is not None else None
    return model if spoil is None else MalformedAnswers(model, spoil)
