"""How an attempt ended, as the audit log and the metrics name it."""

from __future__ import annotations

from prefect_agentic.errors import BudgetExceededError, PolicyDeniedError, StepFailed


def error_kind(exc: BaseException) -> str:
    """A short, stable name for why an attempt failed, to group failures by.

    ``unmet:tests_failed`` (an outcome criterion, retryable), ``guard:max_changed_lines``
    (a guard criterion), ``policy:<rule>``, ``budget:<limit>``, else the exception's class
    (``StepTimeoutError``, ``SandboxLimitError``, ``ToolOutputError``…).
    """
    chaos_kind = getattr(exc, "chaos_kind", None)
    if chaos_kind:
        return f"chaos:{chaos_kind}"
    if isinstance(exc, StepFailed):
        return f"{'unmet' if exc.retryable else 'guard'}:{'+'.join(exc.criteria) or 'criteria'}"
    if isinstance(exc, PolicyDeniedError):
        return f"policy:{exc.rule}"
    if isinstance(exc, BudgetExceededError):
        return f"budget:{exc.limit}"
    return type(exc).__name__
