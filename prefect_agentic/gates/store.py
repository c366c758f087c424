"""Approvals that outlive the flow run that asked for them.

A gate's key names exactly what was approved (the step's spec and the
snapshot it starts from), so an approval given once is honoured when the same
run is started again, after a crash, a rejection elsewhere, or a timeout, and
no human is asked twice. Rejections and timeouts are not kept: a run that is
started again asks again.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect_agentic.settings import agentic_home


class ApprovalStore:
    """One JSON file per approved gate, under ``$AGENTIC_HOME/approvals/<run key>/``."""

    def __init__(self, run_key: str, root: Path | None = None) -> None:
        self.path = (root or agentic_home() / "approvals") / run_key

    def get(self, key: str) -> dict[str, Any] | None:
        file = self.path / f"{key}.json"
        return json.loads(file.read_text()) if file.is_file() else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._write(f"{key}.json", record)

    def asked_at(self, key: str) -> datetime:
        """When this gate was first asked: kept while it waits, so a suspended flow run that
        starts again from the top reports the whole wait, not the last second of it."""
        file = self.path / f"{key}.asked.json"
        if file.is_file():
            return datetime.fromisoformat(json.loads(file.read_text())["asked_at"])
        now = datetime.now(timezone.utc)
        self._write(file.name, {"asked_at": now.isoformat()})
        return now

    def forget_asked(self, key: str) -> None:
        (self.path / f"{key}.asked.json").unlink(missing_ok=True)

    def _write(self, name: str, data: dict[str, Any]) -> None:
        """Write atomically, so a crash never leaves a half-written file behind."""
        self.path.mkdir(parents=True, exist_ok=True)
        partial = self.path / f".{name}.partial"
        partial.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(partial, self.path / name)
