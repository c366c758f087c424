"""Secrets for steps: loaded only when the policy grants them, redacted wherever output goes.

A step names the secrets it needs (``secrets: [github-token]``). Each is a
Prefect ``Secret`` block of that name, or a ``SecretStr`` handed to the run
(``run_plan(..., secrets={...})``), and reaches the step's commands as an
environment variable (``GITHUB_TOKEN``). Every value is replaced by
``REDACTED`` in captured output before a tool, a log, an artifact or a record
sees it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr

from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import SecretUnavailableError
from prefect_agentic.plan.models import Step

REDACTED = "***REDACTED***"
MIN_SECRET_LENGTH = 4
"""Shorter values are refused: redacting them would mangle ordinary output."""


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


def _load(name: str, provided: Mapping[str, SecretStr]) -> str:
    if name in provided:
        return provided[name].get_secret_value()
    from prefect.blocks.system import Secret

    try:
        return str(Secret.load(name, _sync=True).get())  # steps run in threads of async tasks
    except (ValueError, LookupError) as exc:
        raise SecretUnavailableError(
            f"secret '{name}' is neither given to the run nor a Prefect Secret block: {exc}"
        ) from None


class Redactor:
    """Replaces known secret values in text and in nested output structures."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = sorted({v for v in values if v}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._values)

    def text(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        return text

    def data(self, value: Any) -> Any:
        """``value`` with every string in it redacted (dicts, lists and tuples are walked)."""
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.data(v) for v in value)
        return value
