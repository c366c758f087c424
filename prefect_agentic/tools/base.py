"""The tool contract every tool follows.

A tool declares ``name``, ``version``, an ``Input`` model and an ``Output``
model. ``Tool.invoke`` is the single door through which a step calls a tool:
it validates the arguments, runs the tool, and validates what came back, so
that a misbehaving tool fails its step with a precise message instead of
crashing the run.
"""

from __future__ import annotations

import logging
import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.errors import (
    SandboxLimitError,
    SandboxLostError,
    SecretUnavailableError,
    ToolError,
    ToolOutputError,
)
from prefect_agentic.record.recorder import LoggingRecorder, Recorder
from prefect_agentic.sandbox.result import CommandResult
from prefect_agentic.sandbox.runner import WORKSPACE_MOUNT, Sandbox

if TYPE_CHECKING:
    from prefect_agentic.plan.models import Plan, Step


class ToolInput(BaseModel):
    """Base of tool input models: unknown arguments are errors, not ignored."""

    model_config = ConfigDict(extra="forbid")


class ToolOutput(BaseModel):
    """Base of tool output models.

    ``exit_code`` is the exit code of the tool's main command (0 for tools that
    run no command). ``log`` is the captured output, already capped by the
    sandbox, kept so that a failed step can be understood later.
    """

    model_config = ConfigDict(extra="forbid")

    exit_code: int
    log: str = ""


class StepTimeoutError(ToolError):
    """The step's command ran past its timeout and its container was killed."""

    retryable = True


class CallGuard:
    """Checks every tool call and command of a step; this base lets everything through.

    The executor gives each step a guard that enforces the tool policy, the
    run's budget and the step's secrets (``prefect_agentic.guard.StepGuard``).
    Tools never call it themselves: ``Tool.invoke`` and ``ToolContext.run`` do,
    so no tool can go around it.
    """

    def before_tool(self, tool: type[Tool], args: ToolInput) -> None:
        """Raise to refuse the call."""

    def before_command(self, command: Sequence[str], timeout: float) -> float:
        """Raise to refuse the command; returns the timeout to use (may shorten it)."""
        return timeout

    def after_command(self, result: CommandResult) -> CommandResult:
        """Account for the result and return it as the tool may see it (e.g. redacted)."""
        return result

    def redact(self, raw: Mapping[str, Any]) -> Mapping[str, Any]:
        """A tool's raw output as it may be kept and shown."""
        return raw

    def spend(self, meter: str, amount: float) -> None:
        """Count what a call cost once it is known (``cost`` of LLM tokens)."""


@dataclass(frozen=True)
class ToolContext:
    """What a running tool may use: the sandbox and the step's workspace.

    ``workspace`` is the host path of the run workspace (mounted at
    ``/workspace`` in the sandbox); it is attacker-controlled, so a tool never
    opens paths under it itself: it reads and writes through ``files`` (a
    ``WorkspaceFiles`` that never follows links) and runs git through
    ``prefect_agentic.workspace.run_git``. ``reports_path`` is a directory inside it,
    excluded from snapshots, where a tool may ask its command to write
    machine-readable reports: ``reports`` is the host-side view of it and
    ``report_dir_in_sandbox`` the same place seen from inside the container.
    ``recorder`` is the run's: a tool that decides or spends something (a
    model call's tokens) records it there.

    ``timeout_seconds`` is the step's time: ``deadline`` (a ``time.monotonic``
    instant, by default ``timeout_seconds`` after the context was made) is when
    it ends. Every command gets what is left, so a step of several commands
    cannot outlast its timeout. The deadline is enforced here and by the
    sandbox (which kills the container), not by a Prefect task timeout: a sync
    task runs in a worker thread, where Prefect cannot cancel it and only logs
    a warning.
    """

    sandbox: Sandbox
    workspace: Path
    reports_path: str
    step_id: str
    base_snapshot: str
    attempt: int
    timeout_seconds: float
    env: Mapping[str, str] = field(default_factory=dict)
    recorder: Recorder = field(default_factory=LoggingRecorder)
    network: str | None = None
    guard: CallGuard = field(default_factory=CallGuard)
    deadline: float | None = None
    reports_filter: Callable[[WorkspaceFiles], WorkspaceFiles] | None = None
    """Wraps the ``reports`` view (a chaos run's ``garbled_output`` spoils what tools read there)."""
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = logging.getLogger(
        "prefect_agentic.tools"
    )

    def __post_init__(self) -> None:
        if self.deadline is None:
            object.__setattr__(self, "deadline", time.monotonic() + self.timeout_seconds)

    def remaining(self) -> float:
        """Seconds left until the step's deadline (never negative)."""
        assert self.deadline is not None
        return max(0.0, self.deadline - time.monotonic())

    @property
    def files(self) -> WorkspaceFiles:
        """The step's worktree, as host code may touch it (no links followed, sizes capped)."""
        return WorkspaceFiles(self.workspace)

    @property
    def reports(self) -> WorkspaceFiles:
        """The step's report directory (``report_dir_in_sandbox`` on the host), same rules as ``files``."""
        view = self.files.sub(self.reports_path)
        return view if self.reports_filter is None else self.reports_filter(view)

    @property
    def report_dir_in_sandbox(self) -> str:
        """Where the sandboxed command sees ``reports``."""
        return f"{WORKSPACE_MOUNT}/{self.reports_path}"

    def secret(self, name: str) -> str:
        """The value of the step's secret ``name``, for host-side use by the tool (a token for an API).

        Only secrets the step lists in ``secrets:`` and the policy grants it are
        there; anything else is a ``SecretUnavailableError`` saying what to add.
        """
        from prefect_agentic.secrets import secret_env_name

        value = self.env.get(secret_env_name(name))
        if value is None:
            raise SecretUnavailableError(
                f"step '{self.step_id}' needs secret '{name}': list it in the step's secrets "
                "and grant it in the tool policy's secret_grants"
            )
        return value

    def run(self, command: Sequence[str]) -> CommandResult:
        """Run ``command`` in the sandbox with what is left of the step's time, and its environment.

        A timeout becomes a retryable ``StepTimeoutError``: the container is
        already gone, and a later attempt may be luckier.
        """
        left = self.remaining()
        if left <= 0:
            raise StepTimeoutError(f"command {list(command)!r} did not start: the step used up its "
                                   f"timeout of {self.timeout_seconds:g}s")
        timeout = self.guard.before_command(command, left)
        env = {"AGENTIC_STEP_ID": self.step_id, "AGENTIC_STEP_ATTEMPT": str(self.attempt)}
        env.update(self.env)
        result = self.guard.after_command(
            self.sandbox.run(command, timeout=timeout, env=env, network=self.network)
        )
        limits = getattr(self.sandbox, "settings", None)
        processes = f" ({limits.pids})" if limits else ""
        if result.timed_out:
            also = f"; the process limit{processes} was reached" if result.pids_limit_hit else ""
            raise StepTimeoutError(
                f"command {list(command)!r} exceeded the step timeout of "
                f"{self.timeout_seconds:g}s and was killed{also}"
            )
        if result.oom_killed:
            memory = f" ({limits.memory})" if limits else ""
            raise SandboxLimitError(
                f"command {list(command)!r} was killed: out of memory (sandbox memory limit{memory})"
            )
        if result.sandbox_lost is not None:
            raise SandboxLostError(
                f"command {list(command)!r} lost its sandbox: {result.sandbox_lost}; whether it "
                "finished is unknown, so the attempt fails and a retry starts in a new container")
        if result.sandbox_exit_code is not None:
            raise SandboxLimitError(
                f"command {list(command)!r} stopped the sandbox itself (its container exited with "
                f"code {result.sandbox_exit_code}); the next command starts a new sandbox"
            )
        if result.pids_limit_hit and result.exit_code != 0:
            raise SandboxLimitError(
                f"command {list(command)!r} failed (exit code {result.exit_code}) after reaching "
                f"the sandbox process limit{processes}: new processes were refused"
            )
        return result


class Tool(ABC):
    """A named, versioned operation with typed input and output.

    Subclasses set the class attributes and implement ``run``, which returns a
    mapping that must fit ``Output``. ``default_success`` holds success
    criteria that apply when a step sets none of its own (for instance a shell
    command is expected to exit 0).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str]
    Input: ClassVar[type[ToolInput]]
    Output: ClassVar[type[ToolOutput]]
    default_success: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def parse_args(cls, args: Mapping[str, Any]) -> ToolInput:
        """Validate step arguments against the input model (raises ``ValidationError``)."""
        return cls.Input.model_validate(dict(args))

    @classmethod
    def changes_files(cls, args: ToolInput) -> bool:
        """Whether this call is known to change files (its step must write the workspace)."""
        return False

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        """The operation this call performs, as policies name it (``tool:operation``)."""
        return "run"

    @classmethod
    def command_preview(cls, args: ToolInput) -> str | None:
        """The command line this call will run, when the arguments alone tell (for policy
        checks before the run and for approvers); ``None`` when they do not."""
        return None

    @classmethod
    def mcp_server_url(cls, args: ToolInput) -> str | None:
        """The MCP server URL this call reaches from the host, which the policy's ``mcp_servers``
        must allow; ``None`` for a call that reaches none."""
        return None

    @classmethod
    def known_failure(cls, plan: Plan, step: Step) -> str | None:
        """Why ``step`` of ``plan`` cannot succeed, when its place in the plan alone tells.

        Validation rejects such a plan, so that nobody is asked to approve a step
        that can only fail. ``step.args`` are valid arguments of this tool and the
        step graph is acyclic with known dependencies. ``None``: no known failure.
        """
        return None

    @abstractmethod
    def run(self, args: Any, ctx: ToolContext) -> Mapping[str, Any]:
        """Do the work and return the raw output fields."""

    def invoke(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        """Validate ``args``, pass the guard, run the tool, and validate its output."""
        try:
            parsed = self.parse_args(args)
        except ValidationError as exc:
            raise ToolError(f"tool '{self.name}' rejected its arguments: {_short(exc)}") from None
        ctx.guard.before_tool(type(self), parsed)
        raw = ctx.guard.redact(self.run(parsed, ctx))
        try:
            return self.Output.model_validate(dict(raw))
        except ValidationError as exc:
            raise ToolOutputError(
                f"tool '{self.name}' v{self.version} produced output that does not fit "
                f"its output model: {_short(exc)}"
            ) from None


def command_line(command: Sequence[str] | str) -> str:
    """A command as one line of text (a list is joined the way a shell would read it)."""
    return command if isinstance(command, str) else shlex.join(command)


def _short(exc: ValidationError) -> str:
    """One line per validation error, ``field.path: message``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
