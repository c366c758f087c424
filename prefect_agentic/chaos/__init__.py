"""Fault injection for chaos runs: off (``None``) unless a run is given a ``ChaosSpec``."""

from prefect_agentic.chaos.injector import ChaosInjector, InjectedFault
from prefect_agentic.chaos.spec import ChaosSpec, Fault, FaultKind, load_chaos_spec

__all__ = ["ChaosInjector", "ChaosSpec", "Fault", "FaultKind", "InjectedFault", "load_chaos_spec"]
