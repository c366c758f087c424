"""Run ids as users type them: the whole flow run id, or any unique start of it.

Every command that takes a RUN (``approve``, ``audit verify``, ``replay``,
``export``…) resolves it here, against the runs that command can act on, so a
short id means the same thing everywhere and an unknown or ambiguous one gets
the same clear error (exit 2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prefect_agentic.errors import AgenticError
from prefect_agentic.record.store import AuditStore

_FULL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SHOWN = 4


class RunIdError(AgenticError):
    """A RUN argument names no run, or more than one."""


def resolve_run_id(ref: str, known: Iterable[str], *, among: str, hint: str) -> str:
    """The one id in ``known`` that ``ref`` is, or starts with (case-insensitive).

    ``among`` says which runs were searched ("runs with an audit log in …") and
    ``hint`` how to list them; both go into the error.
    """
    wanted = ref.strip().lower()
    if not wanted:
        raise RunIdError("RUN is empty: give a flow run id or its start")
    ids = sorted(set(known))
    if wanted in ids:
        return wanted
    found = [run_id for run_id in ids if run_id.startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise RunIdError(f"no run id starts with '{ref}' among {among} ({hint})")
    shown = ", ".join(f"{run_id[:13]}…" for run_id in found[:_SHOWN])
    more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
    raise RunIdError(f"'{ref}' is the start of {len(found)} run ids ({shown}{more}); give more of it")


def audited_run_id(store: AuditStore, ref: str) -> str:
    """The run with an audit log in ``store`` that ``ref`` names.

    A whole id is taken as it is (the store says if it has no log for it), so
    a full id never pays for listing the store.
    """
    if _FULL_ID.match(ref.strip().lower()):
        return ref.strip().lower()
    return resolve_run_id(ref, store.run_ids(), among=f"runs with an audit log in {store.describe()}",
                          hint="`agentic stats` counts them; the Prefect UI lists flow runs")
