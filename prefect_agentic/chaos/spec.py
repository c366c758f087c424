"""What a chaos run injects: faults with a rate, a tool-name selector and a seed.

A decision (does fault *i* hit this attempt of this step?) is a hash of
(seed, fault index, step id, attempt), not a draw from a shared random
stream, so it does not depend on which thread asked first: the same spec on
the same plan injects the same faults in every run, however steps interleave.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prefect_agentic.errors import AgenticError


class ChaosSpecError(AgenticError):
    """A chaos spec that cannot be read; the message names the spec and the place."""


class FaultKind(str, Enum):
    latency_before = "latency_before"
    """Sleep ``seconds`` before the tool runs."""
    latency_after = "latency_after"
    """Sleep ``seconds`` after the tool ran (before its output is evaluated)."""
    tool_exit = "tool_exit"
    """The tool call fails as a command exiting non-zero would (retryable)."""
    tool_timeout = "tool_timeout"
    """The tool call fails as a command killed at its timeout would (retryable)."""
    container_kill = "container_kill"
    """The step's sandbox container is killed (``docker kill``) ``seconds`` after its first command started."""
    docker_unavailable = "docker_unavailable"
    """The step's Docker engine calls fail as a refused engine socket would, for ``seconds`` of the attempt."""
    garbled_output = "garbled_output"
    """Every report the tool reads is ``mode``: truncated, garbled, of the wrong type, or too big to read."""
    llm_malformed = "llm_malformed"
    """A model's answer arrives as ``mode``: invalid JSON, a schema violation, empty, or a plan with a cycle."""
    api_error = "api_error"
    """A Prefect API request of the run's process gets an HTTP ``status`` answer instead of reaching the API."""
    api_latency = "api_latency"
    """A Prefect API request of the run's process waits ``seconds`` before it is sent."""
    canary_regression = "canary_regression"
    """The canary's metrics read as a regression (``mode``: errors or latency) so the rollback path runs."""
    process_kill = "process_kill"
    """The run's process is killed (SIGKILL) ``seconds`` after the selected attempt started."""


GARBLE_MODES = ("truncated", "garbled", "wrong_type", "huge")
"""How ``garbled_output`` spoils a report (``mode``; unset: chosen by the seed per attempt)."""
LLM_MODES = ("invalid_json", "schema_violation", "empty", "cycle")
"""How ``llm_malformed`` spoils an answer (``mode``; unset: chosen by the seed per answer)."""
CANARY_MODES = ("errors", "latency")
"""How ``canary_regression`` spoils the canary's metrics: half its requests errors, or every one slow."""
MODES = {FaultKind.garbled_output: GARBLE_MODES, FaultKind.llm_malformed: LLM_MODES,
         FaultKind.canary_regression: CANARY_MODES}
API_KINDS = frozenset({FaultKind.api_error, FaultKind.api_latency})
"""Faults on the Prefect API requests of the run's process (``prefect_agentic.chaos.api``): selected by
``routes`` and ``attempts`` (the try number inside Prefect's own retry loop), not by tool or step."""


class Fault(BaseModel):
    """One fault: which kind, how often, on which tools and attempts."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    rate: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    tools: str = Field("*", description="fnmatch pattern on the tool name, e.g. 'deploy.*' or 'shell'.")
    steps: str = Field("*", description="fnmatch pattern on the step id.")
    attempts: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="Only these attempt numbers (e.g. [1]: the retry runs clean); default all.")
    seconds: Annotated[float, Field(ge=0.0, le=600.0)] = 1.0
    """Latency of the latency kinds; delay of ``container_kill`` and ``process_kill``; outage of
    ``docker_unavailable``."""
    mode: str | None = Field(None, description="garbled_output: truncated, garbled, wrong_type or huge; "
                                               "llm_malformed: invalid_json, schema_violation, empty or cycle; "
                                               "canary_regression: errors or latency "
                                               "(default: chosen by the seed each time).")

    routes: str = Field("*", description="api kinds: fnmatch pattern on the API route, the request's path "
                                          "after /api/, e.g. 'task_runs/*' or 'logs/'.")
    status: Annotated[int, Field(ge=400, le=599)] = 503
    """``api_error``: the HTTP status of the injected answer (Prefect's client retries 408, 429, 502, 503)."""
    retry_after: Annotated[float, Field(ge=0.0, le=600.0)] | None = None
    """``api_error``: a ``Retry-After`` header (seconds) on the injected answer; unset, Prefect backs off."""

    @model_validator(mode="after")
    def _selectors_fit_kind(self) -> Fault:
        if self.kind in API_KINDS:
            if self.tools != "*" or self.steps != "*":
                raise ValueError(f"{self.kind.value} hits API requests, not tools or steps: select them with routes")
        elif self.routes != "*":
            raise ValueError(f"routes is only for api_error and api_latency, not {self.kind.value}")
        # values, not whether a field was given: a saved spec (a block) holds every field
        if self.kind is not FaultKind.api_error and (self.status != 503 or self.retry_after is not None):
            raise ValueError(f"status and retry_after are only for api_error, not {self.kind.value}")
        return self

    @model_validator(mode="after")
    def _mode_fits_kind(self) -> Fault:
        if self.mode is not None:
            modes = MODES.get(self.kind)
            if modes is None:
                raise ValueError(f"mode is only for garbled_output, llm_malformed and canary_regression, "
                                 f"not {self.kind.value}")
            if self.mode not in modes:
                raise ValueError(f"mode {self.mode!r} of {self.kind.value} is not one of {', '.join(modes)}")
        return self

    def pick_mode(self, spec: ChaosSpec, index: int, step_id: str, attempt: int) -> str:
        """``mode``, or one of the kind's modes chosen by the seed for this attempt."""
        return self.mode or spec.choice(index, step_id, attempt, MODES[self.kind])

    def selects(self, tool: str, step_id: str, attempt: int) -> bool:
        return (fnmatch.fnmatchcase(tool, self.tools) and fnmatch.fnmatchcase(step_id, self.steps)
                and (self.attempts is None or attempt in self.attempts))


class ChaosSpec(BaseModel):
    """The faults of a chaos run and the seed that makes it reproducible."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    faults: list[Fault] = Field(default_factory=list)

    @property
    def api_faults(self) -> bool:
        """Whether any fault hits the Prefect API (the run then installs ``prefect_agentic.chaos.api``)."""
        return any(f.kind in API_KINDS for f in self.faults)

    @property
    def process_kills(self) -> bool:
        """Whether a fault may kill the run's process (a campaign then runs it as a subprocess)."""
        return any(f.kind is FaultKind.process_kill for f in self.faults)

    def hits(self, index: int, step_id: str, attempt: int) -> bool:
        """Whether fault ``index`` strikes this attempt: a seeded, order-free coin."""
        key = f"{self.seed}:{index}:{step_id}:{attempt}".encode()
        draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
        return draw < self.faults[index].rate

    def choice(self, index: int, step_id: str, attempt: int, options: tuple[str, ...]) -> str:
        """One of ``options`` for fault ``index`` on this attempt, seeded like ``hits`` (a separate draw)."""
        key = f"{self.seed}:{index}:{step_id}:{attempt}:choice".encode()
        return options[int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % len(options)]


def load_chaos_spec(source: str) -> ChaosSpec:
    """A spec from a YAML/JSON file path or inline JSON; a bad one is a ``ChaosSpecError`` naming it."""
    path = Path(source)
    where = f"chaos spec {source}"
    try:
        data = yaml.safe_load(path.read_text()) if not source.lstrip().startswith("{") else json.loads(source)
        return ChaosSpec.model_validate(data)
    except OSError as exc:
        raise ChaosSpecError(f"{where}: cannot read it: {exc.strerror}") from None
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ChaosSpecError(f"{where}: not YAML/JSON: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ChaosSpecError(f"{where}: {problems}") from None
