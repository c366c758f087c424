"""Secrets for steps: loaded only when the policy grants them, redacted wherever output goes.

A step names the secrets it needs (``secrets: [github-token]``). Each is a
Prefect ``Secret`` block of that name, or a ``SecretStr`` handed to the run
(``run_plan(..., secrets={...})``), and reaches the step's commands as an
environment variable (``GITHUB_TOKEN``). Every value is replaced by
``REDACTED`` in captured output before a tool, a log, an artifact or a record
sees it.

A run has one ``Redactor`` for all its secrets (``run_secret_values``), not one
per step: a step may write its secret into the workspace, where any later step
can print it, diff it or name a file after it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, SecretStr

from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import SecretUnavailableError, ToolError

if TYPE_CHECKING:  # the records' seam (``record.recorder``) imports this module, and plans import that
    from prefect_agentic.plan.models import Step

REDACTED = "***REDACTED***"
MIN_SECRET_LENGTH = 4
"""Shorter values are refused: redacting them would mangle ordinary output."""
SERIALIZED_MASK = "**********"
"""What pydantic writes for a ``SecretStr`` in JSON, and so what one reads back after crossing Prefect's
API (a deployment's parameters, a suspended run's resume, a task worker's parameters)."""


def secret_env_name(name: str) -> str:
    """The environment variable a secret arrives in: ``github-token`` → ``GITHUB_TOKEN``."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def load_step_secrets(step: Step, policy: ToolPolicy,
                      provided: Mapping[str, SecretStr] | None = None) -> dict[str, str]:
    """The step's granted secrets as environment variables; refuses any the policy does not grant."""
    from prefect_agentic.policy import secret_granted

    env = {}
    for name in step.secrets:
        if not secret_granted(policy, step.id, name):
            raise SecretUnavailableError(
                f"step '{step.id}' asks for secret '{name}', which the tool policy does not grant it"
            )
        value = _load(name, provided or {})
        if len(value) < MIN_SECRET_LENGTH:
            raise SecretUnavailableError(
                f"secret '{name}' is shorter than {MIN_SECRET_LENGTH} characters; it could not be redacted"
            )
        env[secret_env_name(name)] = value
    return env


def check_given_secrets(provided: Mapping[str, SecretStr], steps_on: str) -> None:
    """Refuses, before any step, secrets handed to the run that a step could not receive.

    A ``SecretStr`` given as a flow parameter survives only in the process it was
    given to: Prefect stores parameters as JSON, where pydantic writes the mask.
    A run started from a deployment or resumed after a suspension reads the mask
    back, and a task worker would be handed it (or the value stored in the task
    scheduling storage, were it pickled); a step given the mask would run with a
    wrong credential, silently. Secret blocks are loaded where the step runs.
    """
    masked = sorted(name for name, value in provided.items() if value.get_secret_value() == SERIALIZED_MASK)
    if masked:
        raise SecretUnavailableError(
            f"secret(s) {masked} given to the run arrived masked ({SERIALIZED_MASK!r}): a SecretStr parameter "
            "does not survive Prefect's API (deployment parameters, a suspended run's resume); save each as a "
            "Prefect Secret block of that name and do not pass it to the run")
    if provided and steps_on != "local":
        raise SecretUnavailableError(
            f"secret(s) {sorted(provided)} given to the run cannot reach task workers (steps_on={steps_on!r}): "
            "a step's parameters are stored for the worker to read; save each as a Prefect Secret block of "
            "that name, which the worker loads itself, and do not pass it to the run")


def named_secrets(steps: Iterable[Step]) -> list[str]:
    """The secrets ``steps`` name, each once (what a run's redactor must know besides the given ones)."""
    return sorted({name for step in steps for name in step.secrets})


def run_secret_values(provided: Mapping[str, SecretStr], names: Iterable[str]) -> list[str]:
    """Every secret value of a run: those handed to it and the Secret blocks its steps name.

    A block that cannot be loaded is left out: no step can receive it either
    (the step asking for it fails), and a step that does load it later adds it
    to the run's redactor before its commands run.
    """
    values = [secret.get_secret_value() for secret in provided.values()]
    for name in names:
        if name not in provided:
            try:
                values.append(_load(name, provided))
            except SecretUnavailableError:
                continue
    return [value for value in values if len(value) >= MIN_SECRET_LENGTH]


def _load(name: str, provided: Mapping[str, SecretStr]) -> str:
    if name in provided:
        check_given_secrets({name: provided[name]}, "local")
        return provided[name].get_secret_value()
    from prefect.blocks.system import Secret

    try:
        return str(Secret.load(name, _sync=True).get())  # steps run in threads of async tasks
    except (ValueError, LookupError) as exc:
        raise SecretUnavailableError(
            f"secret '{name}' is neither given to the run nor a Prefect Secret block: {exc}"
        ) from None


Model = TypeVar("Model", bound=BaseModel)


class Redactor:
    """Replaces known secret values in text, in nested output structures, models and exceptions.

    Matching is by exact value: an encoded form of a secret (base64, hex, URL
    quoting, a value split across lines) is not recognised.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: list[str] = []
        self._lock = threading.Lock()
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Learn more secrets (a step's, once loaded); steps of the run read the redactor meanwhile."""
        with self._lock:
            self._values = sorted({*self._values, *(v for v in values if v)}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._values)

    def text(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        return text

    def data(self, value: Any) -> Any:
        """``value`` with every string in it redacted (dicts, lists and tuples are walked).

        Dict keys are redacted too: tools key results by file or function names, which
        the workspace chooses. Two keys that differ only in a secret become one.
        """
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.data(v) for v in value)
        return value

    def model(self, model: Model) -> Model:
        """A copy of ``model`` with every string in it redacted."""
        if not self._values:
            return model
        return type(model).model_validate(self.data(model.model_dump(mode="json")))

    def exception(self, exc: BaseException) -> BaseException:
        """``exc`` as it may leave the run: Prefect stores and logs the text of an exception a task raises.

        The exception and those it was raised from or during are redacted in
        place (arguments and attributes), so that their type and what callers
        act on (``retryable``, a failed step's output) stay. One whose text
        still holds a secret (text from state an exception keeps elsewhere, like
        an ``OSError``'s file name) is replaced by a ``ToolError`` with the
        redacted text, with nothing chained.
        """
        if not self._values:
            return exc
        chain = _chain(exc)
        for each in chain:
            each.args = self.data(each.args)
            attributes = vars(each)
            for name, value in list(attributes.items()):
                redacted = self.data(value)
                if redacted is not value and redacted != value:
                    attributes[name] = redacted
        if all(self.text(str(each)) == str(each) for each in chain):
            return exc
        replaced = ToolError(self.text(f"{type(exc).__name__}: {exc}"))
        replaced.retryable = bool(getattr(exc, "retryable", False))
        replaced.__suppress_context__ = True
        return replaced


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it was raised from or while handling, each once."""
    found: dict[int, BaseException] = {}
    pending = [exc]
    while pending:
        each = pending.pop()
        if id(each) not in found:
            found[id(each)] = each
            pending += [e for e in (each.__cause__, each.__context__) if e is not None]
    return list(found.values())
