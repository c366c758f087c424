"""prefect-agentic: agentic software-development workflows on Prefect 3.

A goal becomes a plan of small verifiable steps; the plan is compiled at runtime
into a Prefect flow whose steps are cached, retryable tasks that run their
commands in Docker sandboxes.

The block classes are attributes of this package, so that
``prefect block register -m prefect_agentic`` (the form Prefect collections use)
finds them; they are imported on first access only, so importing the package
stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_BLOCKS = ("AuditStorage", "Budget", "ChaosSettings", "GateDefaults", "LLMEndpoint", "SandboxSettings", "ToolPolicy")


def __getattr__(name: str) -> Any:
    if name in _BLOCKS:
        from prefect_agentic import blocks

        return getattr(blocks, name)
    raise AttributeError(f"module 'prefect_agentic' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_BLOCKS])
