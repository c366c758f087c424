"""The audit log: an append-only, hash-chained record of every decision of one flow run.

Each record is one JSON line carrying the hash of the record before it, so an
edited, removed or reordered record breaks the chain (``verify``). A record is
on storage before ``record`` returns, and callers record an action before it
counts as done, so a crash never leaves a done action unrecorded: a killed
process loses no record, and the records that mark work done (``COMMIT_KINDS``)
are fsynced, which makes them and every record before them survive a machine
crash too. Large text values go to content-addressed objects and are
referenced from the record.

Every record passes the run's redactor before it is stored: records quote
the workspace (diffs, file names, tool output, error text) and a step may
have written any secret of the run there. Events, artifacts and the debug
log are made from the stored, redacted record.

After a record is stored, the log's observers see it (Prefect events, the
progress artifact); an observer that fails is logged, never fails the run.

A flow run has one log and one chain, however many processes it takes: a run
suspended at a gate and resumed (on any worker), or crashed and retried, starts
a new process, whose ``AuditLog`` continues after the last stored record
(``previous``) instead of starting a second chain.

A log rewritten from some record on, every later hash recomputed ("resealed"),
or cut off, is still a chain: only a head kept elsewhere shows it. Each process
of a run ends by handing its log's head (``AuditLog.anchor``) to Prefect, and
``check_anchor`` compares a log with the latest such ``AuditAnchor``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from prefect_agentic.errors import AuditError
from prefect_agentic.record.recorder import LoggingRecorder
from prefect_agentic.record.store import AuditStore
from prefect_agentic.secrets import Redactor

GENESIS = "0" * 64
"""The ``prev`` of a log's first record."""

AUDIT_SCHEMA_VERSION = 1
"""The audit record format this pack writes and the newest it reads. A record
without ``schema_version`` (written before the field existed) is version 1, and
its hash is computed without the field, exactly as when it was written."""

COMMIT_KINDS = frozenset({"attempt_finished", "approval", "plan", "run_finished", "run_suspended"})
"""Records after which something counts as done (a step's attempt, a human's answer, a
plan version, the run): fsynced. Other records wait for the next of these, at most
one step later; fsync costs milliseconds, several times per step otherwise."""

logger = logging.getLogger("prefect_agentic.audit")


class AuditRecord(BaseModel):
    """One line of an audit log."""

    schema_version: int = AUDIT_SCHEMA_VERSION
    """The record's format; part of its hash only when the record carries it."""
    seq: int
    at: datetime
    kind: str
    step: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    prev: str
    hash: str = ""

    def content_hash(self) -> str:
        """sha256 of the record's canonical JSON without its own hash (but with ``prev``)."""
        return _canonical_hash(self._body())

    def seal(self) -> bytes:
        """Set ``hash`` and return the record's line (one serialization for both)."""
        body = self._body()
        self.hash = _canonical_hash(body)
        return json.dumps({**body, "hash": self.hash}, sort_keys=True, ensure_ascii=False).encode()


    def _body(self) -> dict[str, Any]:
        """What the hash covers: every field but ``hash``; ``schema_version`` only if the record has it."""
        unversioned = "schema_version" not in self.model_fields_set
        return self.model_dump(mode="json", exclude={"hash", "schema_version"} if unversioned else {"hash"})


def _canonical_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


Observer = Callable[[AuditRecord], None]


class AuditLog:
    """The ``Recorder`` of one flow run: chains, stores, then tells the observers."""

    def __init__(self, store: AuditStore, flow_run_id: str, observers: list[Observer] | None = None,
                 redactor: Redactor | None = None) -> None:
        self.store = store
        self.flow_run_id = flow_run_id
        self.observers = list(observers or [])
        self.redactor = redactor or Redactor()
        self.previous = _stored_records(store.existing_lines(flow_run_id))
        """The records earlier processes of this flow run stored (empty for a new run)."""
        last = self.previous[-1] if self.previous else None
        self.head = last.hash if last else GENESIS
        self.count = last.seq + 1 if last else 0
        self._last = last
        self._lock = threading.Lock()
        self._debug_log = LoggingRecorder()

    def record(self, kind: str, data: Mapping[str, Any], *, step_id: str | None = None) -> AuditRecord:
        clean = self.redactor.data(_plain(data))
        with self._lock:
            entry = AuditRecord(schema_version=AUDIT_SCHEMA_VERSION, seq=self.count, at=datetime.now(timezone.utc), kind=kind, step=step_id,
                                data=self.store.externalize(clean), prev=self.head)
            self.store.append(self.flow_run_id, entry.seal(), sync=kind in COMMIT_KINDS)
            self.head, self.count, self._last = entry.hash, self.count + 1, entry
        self._debug_log.record(kind, clean, step_id=step_id)  # the records in the Python log, as before
        for observer in self.observers:
            try:
                observer(entry)
            except Exception:  # an event or artifact problem must never fail a run
                logger.exception("audit observer %r failed on a %s record", observer, kind)
        return entry

    def anchor(self) -> AuditAnchor | None:
        """The head as it stands and the record it is the hash of (None for a log with no record)."""
        with self._lock:
            last = self._last
        return None if last is None else AuditAnchor(seq=last.seq, record=last.kind, head=last.hash)


def _stored_records(lines: list[bytes]) -> list[AuditRecord]:
    """The records of an existing log, in file order. Only each record's own ``seq`` and
    ``hash`` matter for going on, and they are read the same way by any version of the pack;
    a line that is not a record (torn, edited) is left for ``verify`` to report."""
    return [entry for entry in map(_parse, lines) if entry is not None]


def _plain(data: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-compatible copy of ``data`` (pydantic models, paths, datetimes become text)."""
    return json.loads(json.dumps(dict(data), default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


class Verification(BaseModel):
    """What ``verify`` found: problems (tampering) and whether the run finished its log."""

    records: int
    head: str
    problems: list[str] = Field(default_factory=list)
    complete: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_log(lines: list[bytes]) -> list[AuditRecord]:
    """Records of a log, in file order; a line that is not a record is an ``AuditError``."""
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(AuditRecord.model_validate_json(line))
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise AuditError(f"audit log line {number} is not an audit record: {problem}") from None
        check_readable(records[-1], number)
    return records


class FutureAuditRecordError(AuditError):
    """A record written in a newer audit format than this pack reads."""


def check_readable(entry: AuditRecord, number: int) -> None:
    """``FutureAuditRecordError`` for a record in a newer format (naming its line and both versions)."""
    if entry.schema_version > AUDIT_SCHEMA_VERSION:
        from prefect_agentic.pins import pack_version  # the installed pack, for the message

        raise FutureAuditRecordError(
            f"audit log line {number} (seq {entry.seq}, {entry.kind}) has record schema version "
            f"{entry.schema_version}, newer than this pack reads (prefect-agentic {pack_version()} reads "
            f"audit schema versions 1 to {AUDIT_SCHEMA_VERSION}); read it with a newer prefect-agentic")


def verify(lines: list[bytes]) -> Verification:
    """Check every record's hash and the chain from the first record to the last.

    An edited record no longer matches its hash (or, if its hash was
    recomputed, the next record's ``prev``); a removed record leaves a gap in
    the sequence numbers and the chain; reordered records are out of sequence.
    A log that does not end with ``run_finished`` is incomplete: the run is
    still going, crashed, or its last records were removed. A record in a newer
    format than this pack reads is a ``FutureAuditRecordError``, not a problem:
    this pack cannot tell whether it is intact.
    """
    problems: list[str] = []
    parsed = [_parse(line) for line in lines]
    for number, entry in enumerate(parsed, 1):
        if entry is not None:
            check_readable(entry, number)
    records = [entry for entry in parsed if entry is not None]
    by_seq = {entry.seq: entry for entry in records}
    highest = -1
    for number, entry in enumerate(parsed, 1):
        if entry is None:
            problems.append(f"line {number}: not an audit record (edited)")
            continue
        where = f"line {number} (seq {entry.seq}, {entry.kind})"
        if entry.content_hash() != entry.hash:
            problems.append(f"{where}: content does not match its hash (edited)")
        before = GENESIS if entry.seq == 0 else getattr(by_seq.get(entry.seq - 1), "hash", None)
        if before is not None and entry.prev != before:
            problems.append(f"{where}: does not follow record seq {entry.seq - 1} (edited or replaced)")
        if entry.seq <= highest:
            problems.append(f"{where}: out of order after seq {highest} (reordered)")
        highest = max(highest, entry.seq)
    missing = [seq for seq in range(highest + 1) if seq not in by_seq]
    if missing:
        problems.append(f"record(s) seq {', '.join(map(str, missing))} missing (removed)")
    last = by_seq.get(highest)
    complete = last is not None and last.kind == "run_finished"
    return Verification(records=len(lines), head=last.hash if last else GENESIS,
                        problems=problems, complete=complete)


class AuditAnchor(BaseModel):
    """A run's audit head as one of its processes left it, kept by Prefect apart from the log.

    ``seq`` and ``record`` say which record the head is the hash of, so that a log
    cut off before it, or rewritten up to it, is told from one that honestly goes
    on past it (a later process killed before it could hand over its head).
    """

    seq: int = Field(ge=0)
    record: str
    head: str = Field(pattern=r"^[0-9a-f]{64}$")


class AnchorCheck(BaseModel):
    """What comparing a log with its anchor found: a rewrite, or why its end is not covered."""

    problem: str | None = None
    """The log does not hold the anchored head where the anchor says: rewritten or cut off."""
    not_anchored: str | None = None
    """The log holds the anchored head but goes on past it: its end is checked by nothing."""


def check_anchor(lines: list[bytes], anchor: AuditAnchor) -> AnchorCheck:
    """Compare the log ``lines`` with the latest head Prefect holds for the run.

    The chain fixes every record up to the anchored one, so only that record
    needs comparing: it must be there, with the anchored hash, and be the last.
    """
    hashes = {entry.seq: entry.hash for entry in _stored_records(lines)}
    last = max(hashes, default=-1)
    found = hashes.get(anchor.seq)
    where = f"record seq {anchor.seq} ({anchor.record})"
    if found is None:
        ends = f"ends at seq {last} on head {hashes[last][:12]}…" if hashes else "has no record"
        return AnchorCheck(problem=f"the log {ends}, but Prefect's anchor holds head {anchor.head[:12]}… "
                                   f"of {where}: cut off or rewritten")
    if found != anchor.head:
        return AnchorCheck(problem=f"{where} has hash {found[:12]}…, but Prefect's anchor holds "
                                   f"{anchor.head[:12]}… for it: rewritten")
    if last > anchor.seq:
        return AnchorCheck(not_anchored=f"the log goes on past the head Prefect holds ({where}): "
                                        f"record(s) seq {anchor.seq + 1} to {last} are anchored nowhere")
    return AnchorCheck()


def _parse(line: bytes) -> AuditRecord | None:
    try:
        return AuditRecord.model_validate_json(line)
    except ValidationError:
        return None
