"""Fault injection for chaos runs: off (``None``) unless a run is given a ``ChaosSpec``.

The injector is imported on first use: it reaches the sandbox, and the sandbox's settings
block module imports the spec from here.
"""

from typing import Any

from prefect_agentic.chaos.spec import ChaosSpec, Fault, FaultKind, load_chaos_spec

__all__ = ["ChaosInjector", "ChaosSpec", "Fault", "FaultKind", "InjectedFault", "load_chaos_spec"]


def __getattr__(name: str) -> Any:
    if name in ("ChaosInjector", "InjectedFault"):
        from prefect_agentic.chaos import injector

        return getattr(injector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
