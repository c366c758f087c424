"""Prefect flows of prefect-agentic."""

from prefect_agentic.flows.run_plan import run_plan
from prefect_agentic.report import RunReport, StepReport

__all__ = ["RunReport", "StepReport", "run_plan"]
