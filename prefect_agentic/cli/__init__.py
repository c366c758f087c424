"""The `agentic` command line."""
