"""Prefect tasks of prefect-agentic."""

from prefect_agentic.tasks.step import run_step, step_cache_key, step_task

__all__ = ["run_step", "step_cache_key", "step_task"]
