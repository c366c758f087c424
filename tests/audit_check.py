"""The suite-level audit check: every audit log the test suite's flow runs left must verify.

Flow runs of the tests write their logs under the session's state directory
(``$AGENTIC_HOME``) or a test's temporary directory (homes of deployment
stacks, storage blocks on ``tmp_path``), always as ``…/runs/<flow run id>.jsonl``.
At the end of the session every such log is checked with ``verify``: a broken
chain anywhere (a second chain in one file, an edited or lost record) fails the
run. A test that breaks a log on purpose says so with ``expect_broken_audit``; ``reseal``
forges a log that still forms a chain, for the checks against Prefect's anchor.
An incomplete log (a run killed on purpose and not retried) is not a broken one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prefect_agentic.errors import AuditError
from prefect_agentic.record.audit import GENESIS, parse_log, verify

EXPECTED_BROKEN = ".expected-broken"
SKIPPED_DIRS = frozenset({".git", "objects", "workspaces", "approvals", "node_modules", "__pycache__",
                          ".venv"})
"""Directories that hold no audit log (git data, audit objects, run workspaces): not walked."""


def expect_broken_audit(log: Path, why: str) -> None:
    """Mark ``log`` as broken on purpose (a tampering test), so the suite's check leaves it out."""
    Path(f"{log}{EXPECTED_BROKEN}").write_text(why)


def audit_logs(roots: Iterable[Path]) -> Iterator[Path]:
    """Every ``runs/*.jsonl`` under ``roots``."""
    for root in roots:
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS]
            if os.path.basename(directory) == "runs":
                yield from (Path(directory) / f for f in files if f.endswith(".jsonl"))


def broken_audit_logs(roots: Iterable[Path]) -> list[str]:
    """``path: problems`` of each log under ``roots`` that fails verification and is not marked."""
    found = []
    for log in audit_logs(roots):
        if Path(f"{log}{EXPECTED_BROKEN}").exists():
            continue
        try:
            result = verify(log.read_bytes().splitlines())
        except FileNotFoundError:  # removed with its temporary directory since the walk saw it
            continue
        except AuditError as exc:  # a record this pack cannot read (a newer schema version)
            found.append(f"{log}: {exc}")
            continue
        if not result.ok:
            found.append(f"{log}: {'; '.join(result.problems[:3])}")
    return found


def reseal(lines: list[bytes], at: int, change: Callable[[dict[str, Any]], object]) -> list[bytes]:
    """The log ``lines`` with record ``at``'s data changed by ``change`` and every record from it on
    re-chained and re-hashed, as a forger with write access to the audit storage would leave it."""
    records = parse_log(lines)
    change(records[at].data)
    forged = list(lines[:at])
    for i in range(at, len(records)):
        records[i].prev = records[i - 1].hash if i else GENESIS
        forged.append(records[i].seal())
    return forged
