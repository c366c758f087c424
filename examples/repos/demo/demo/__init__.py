"""A tiny package with lint problems for prefect-agentic's demo plan."""
