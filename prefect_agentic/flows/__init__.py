"""Prefect flows of prefect-agentic."""

from prefect_agentic.flows.run_plan import RunReport, StepReport, run_plan

__all__ = ["RunReport", "StepReport", "run_plan"]
