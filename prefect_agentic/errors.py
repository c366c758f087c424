"""Typed errors of prefect-agentic.

Every error names the place it comes from (a file, a step, a field path, a
tool) so that the person reading it knows what to change without a traceback.
"""

from __future__ import annotations


class AgenticError(Exception):
    """Base class of every error raised on purpose by prefect-agentic."""


class PlanError(AgenticError):
    """A plan file or plan object is not a valid plan.

    ``problems`` holds one line per problem, each starting with the place
    (``steps[1] 'fix'.args.mode``) so that tools and people can point at it;
    ``lines`` the plan file's line of each, when the problem came from a file.
    """

    def __init__(self, source: str, problems: list[str], lines: list[int | None] | None = None) -> None:
        self.source = source
        self.problems = problems
        self.lines = lines if lines is not None else [None] * len(problems)  # in the plan file
        listed = "\n".join(f"  - line {line}: {p}" if line else f"  - {p}"
                           for p, line in zip(problems, self.lines))
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: invalid plan ({len(problems)} {noun}):\n{listed}")


class ToolNotFoundError(AgenticError):
    """A plan names a tool that no installed package registers."""


class ToolError(AgenticError):
    """A tool could not do its job (bad invocation, crash, unparsable output).

    A tool error fails the step it happened in; it never crashes the run.
    """

    retryable: bool = False


class ToolOutputError(ToolError):
    """A tool produced output that does not fit its declared output model."""


class SandboxLimitError(ToolError):
    """A command hit a sandbox limit (memory, processes) and was stopped by it."""


class SandboxError(AgenticError):
    """The Docker sandbox could not run a command (engine down, image missing...)."""

    retryable: bool = True


class SandboxUnavailableError(SandboxError):
    """The Docker engine refused a call (its socket gone, the daemon restarting): a retry may find it back."""


class SandboxLostError(SandboxError):
    """The sandbox container was killed under a running command; the retry starts a new one."""


class SandboxImageMissingError(SandboxError):
    """The configured sandbox image is not present on the Docker engine."""

    retryable = False


class WorkspaceError(AgenticError):
    """The run workspace (the run's private clone) is missing or inconsistent."""


class WorkspaceBoundaryError(ToolError):
    """Host code refused a workspace path: a link, a name leaving the workspace, a
    non-regular file where a file was expected, an embedded git repository, or content
    over a size cap. The workspace is attacker-controlled; nothing was followed."""


class WorkspaceSizeLimitError(WorkspaceError):
    """The workspace size limit a run asked for cannot be enforced here, so no step runs.

    A limit that silently went unenforced would let a step fill the host disk; the run
    fails closed instead. ``limit`` is the size asked for (``8g``), ``reason`` why it
    cannot be in force. The message names both and the two ways on.
    """

    def __init__(self, path: object, limit: str, reason: str) -> None:
        self.limit = limit
        self.reason = reason
        super().__init__(
            f"the workspace size limit {limit} cannot be enforced for {path}: {reason}. No step ran. "
            "Run where a size-limited filesystem can be mounted (as root with mount permission: not as "
            "another user, nor in a container without CAP_SYS_ADMIN), or opt out explicitly: an empty "
            "SandboxSettings.workspace_size means no limit (`agentic run --workspace-size none`); the run "
            "then logs a warning and its audit log records the choice: give AGENTIC_HOME a filesystem "
            "with a quota"
        )


class SnapshotMissingError(WorkspaceError):
    """A cached step refers to a snapshot that the workspace no longer holds."""


class StepFailed(AgenticError):
    """A step ran but its result did not meet its success criteria.

    ``retryable`` tells Prefect's retry condition whether another attempt may
    help (an unmet outcome such as failing tests) or not (a guard such as a
    protected path that was changed). ``output`` (the tool's output) and
    ``attempt_snapshot`` (what the attempt changed, if it wrote) let a
    re-plan see why and how the step failed; ``criteria`` are the ones that
    decided (the audit log groups failures by them).
    """

    def __init__(
        self,
        step_id: str,
        reason: str,
        *,
        retryable: bool,
        output: dict[str, object] | None = None,
        attempt_snapshot: str | None = None,
        criteria: list[str] | None = None,
    ) -> None:
        self.step_id = step_id
        self.criteria = criteria or []
        self.reason = reason
        self.retryable = retryable
        self.output = output
        self.attempt_snapshot = attempt_snapshot
        super().__init__(f"step '{step_id}': {reason}")


class PlanRunFailed(AgenticError):
    """A plan run ended with failed or not-run steps; carries the run report."""

    def __init__(self, message: str, report: object) -> None:
        self.report = report
        super().__init__(message)


class LLMError(AgenticError):
    """A language-model endpoint gave no usable answer; the message names the endpoint block."""

    retryable: bool = False


class LLMTimeoutError(LLMError):
    """The endpoint did not answer within the block's ``timeout_seconds``."""

    retryable = True


class LLMUnavailableError(LLMError):
    """The endpoint kept answering 429/5xx (or refusing connections) through every retry."""

    retryable = True


class LLMRequestError(LLMError):
    """The endpoint refused the request (4xx) or answered with something not a chat completion."""


class LLMOutputError(LLMError):
    """The model's answers stayed malformed or invalid after the errors were fed back to it.

    ``problems`` are those of the last answer. A later attempt asks afresh, so
    a step may retry.
    """

    retryable = True

    def __init__(self, message: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{message}:\n{lines}" if problems else message)


class PatchRejectedError(ToolError):
    """A proposed unified diff does not apply to the workspace; the message names the hunk."""


class PolicyDeniedError(ToolError):
    """The tool policy does not allow a tool call, a command or a change.

    ``rule`` names the policy rule that decided, so the message says what to
    change (the plan, or the policy, deliberately).
    """

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(f"denied by policy rule '{rule}': {message}")


class BudgetExceededError(ToolError):
    """A run reached a hard limit of its budget; the run stops and can be resumed with a larger one."""

    def __init__(self, limit: str, message: str) -> None:
        self.limit = limit
        super().__init__(f"budget exhausted ({limit}): {message}")


class SecretUnavailableError(ToolError):
    """A step asked for a secret that the policy does not grant it, or that cannot be loaded."""


class AuditError(AgenticError):
    """An audit log or one of its objects is missing, unreadable or was tampered with."""


class DeploymentError(AgenticError):
    """A deployment, work pool or saved block the submission needs is not on the Prefect API."""


class SubmissionParameterError(AgenticError):
    """Flow parameters of a submission do not fit the deployment's flow; the message names them."""


class StackError(AgenticError):
    """The local Prefect stack (`agentic up`) did not start or stop as asked."""


class ConcurrencyLimitError(AgenticError):
    """A Prefect global concurrency limit could not be read, created or taken."""
