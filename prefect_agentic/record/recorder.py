"""The seam through which every decision of a run is recorded.

Steps, policy checks, approval gates and budgets call ``Recorder.record`` with
a record kind and its data. The default recorder only logs; the audit log
replaces it with an append-only, hash-chained store. Keep kinds stable: they
are part of the audit format.

Kinds: ``run_started``, ``plan``, ``step_input``, ``attempt_started``,
``attempt_finished``, ``verdict``, ``policy_decision``, ``approval``,
``budget``, ``step_finished``, ``run_finished``; ``approval_requested`` (a gate
starts waiting), ``run_suspended`` (the flow run suspended at a gate) and
``run_resumed`` (a later process of the same flow run goes on with its log);
``version_switch`` (a resumed run's pinned versions were gone: switched or stopped).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from prefect_agentic.secrets import Redactor

logger = logging.getLogger("prefect_agentic.record")


class Recorder(Protocol):
    def record(self, kind: str, data: Mapping[str, Any], *, step_id: str | None = None) -> None:
        """Record ``data`` durably before the action it describes counts as done."""


class LoggingRecorder:
    """Records to the Python log only (the default before the audit log exists, and on task workers).

    With the run's redactor, records are logged as the audit log would store them.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor()

    def record(self, kind: str, data: Mapping[str, Any], *, step_id: str | None = None) -> None:
        logger.debug("%s %s %s", kind, step_id or "-", self.redactor.data(dict(data)))
