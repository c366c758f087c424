"""Settings of prefect-agentic itself (environment variables with the AGENTIC_ prefix)."""

from __future__ import annotations

import os
from pathlib import Path


def agentic_home() -> Path:
    """Where run workspaces live: ``$AGENTIC_HOME``, default ``~/.prefect-agentic``."""
    return Path(os.environ.get("AGENTIC_HOME", Path.home() / ".prefect-agentic")).expanduser()
