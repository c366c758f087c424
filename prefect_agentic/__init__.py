"""prefect-agentic: agentic software-development workflows on Prefect 3.

A goal becomes a plan of small verifiable steps; the plan is compiled at runtime
into a Prefect flow whose steps are cached, retryable tasks that run their
commands in Docker sandboxes.
"""

__version__ = "0.1.0"
