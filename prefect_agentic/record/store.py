"""Audit storage on a Prefect filesystem block: run logs and content-addressed objects.

Layout under the block's base path::

    runs/<flow run id>.jsonl        one audit log per flow run (hash-chained JSON lines)
    objects/<sha256[:2]>/<sha256>   large outputs, named by their content, written once

A local filesystem gets true appends: every line is in the operating system's
hands when ``append`` returns (a killed process loses none), and an append with
``sync`` is also fsynced, which makes it and every line before it survive a
machine crash. Other filesystems cannot append, so the whole log is rewritten on
every record (logs stay small: large values live in objects).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from prefect.filesystems import LocalFileSystem, RemoteFileSystem

from prefect_agentic.blocks.audit_storage import AuditStorage
from prefect_agentic.errors import AuditError

BLOB_KEY = "$blob"
"""A large text value replaced by ``{"$blob": "sha256:…", "size": …, "head": …}``."""


def log_path(flow_run_id: str) -> str:
    return f"runs/{flow_run_id}.jsonl"


def object_path(digest: str) -> str:
    return f"objects/{digest[:2]}/{digest}"


class AuditStore:
    """Reads and writes audit logs and objects through the storage block's filesystem."""

    def __init__(self, storage: AuditStorage | None = None) -> None:
        self.storage = storage or AuditStorage.configured()
        self.fs = self.storage.writable_filesystem()
        self._lines: dict[str, list[bytes]] = {}
        self._log_files: dict[str, Path] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        base = getattr(self.fs, "basepath", None) or ""
        return f"{type(self.fs).__name__}({base})"

    # logs -----------------------------------------------------------------

    def append(self, flow_run_id: str, line: bytes, *, sync: bool = True) -> None:
        """Add one line to the run's log; with ``sync``, durable against a machine crash.

        fsync costs milliseconds, so callers sync only where something counts
        as done; the fsync then covers every earlier line of the file too.
        """
        path = log_path(flow_run_id)
        with self._lock:
            local = self._local_log_file(path)
            if local is not None:
                with open(local, "ab") as handle:
                    handle.write(line + b"\n")
                    handle.flush()
                    if sync:
                        os.fsync(handle.fileno())  # fdatasync is missing on macOS; same cost here
                return
            lines = self._lines.setdefault(path, [])
            lines.append(line)
            self.fs.write_path(path, b"".join(item + b"\n" for item in lines))

    def _local_log_file(self, path: str) -> Path | None:
        """The log's local file (its directory made), resolved once per log."""
        if path not in self._log_files:
            local = self._local_path(path)
            if local is None:
                return None
            local.parent.mkdir(parents=True, exist_ok=True)
            self._log_files[path] = local
        return self._log_files[path]

    def read_log(self, flow_run_id: str) -> list[bytes]:
        """The run's log lines; ``AuditError`` naming the storage when there is none."""
        data = self._read(log_path(flow_run_id))
        if data is None:
            raise AuditError(f"no audit log for run {flow_run_id} in {self.describe()}; RUN is a "
                             "flow run id (the report's flow_run_id, the Prefect UI's run id)")
        return [line for line in data.split(b"\n") if line.strip()]

    def has_log(self, flow_run_id: str) -> bool:
        return self._exists(log_path(flow_run_id))

    def run_ids(self) -> list[str]:
        """The flow run ids that have a log here (to resolve a short id a user typed)."""
        local = self._local_path("runs")
        if local is not None:
            names = [p.name for p in local.glob("*.jsonl")] if local.is_dir() else []
        else:
            try:
                fs = self.fs.filesystem  # type: ignore[attr-defined]
                names = [str(p).rsplit("/", 1)[-1] for p in fs.ls(self.fs._resolve_path("runs"), detail=False)]  # type: ignore[attr-defined]
            except (AttributeError, FileNotFoundError, OSError):
                names = []
        return sorted(name.removesuffix(".jsonl") for name in names if name.endswith(".jsonl"))

    # objects --------------------------------------------------------------

    def put(self, content: bytes) -> str:
        """Store ``content`` under its sha256 (once) and return ``sha256:<hex>``."""
        digest = hashlib.sha256(content).hexdigest()
        path = object_path(digest)
        if not self._exists(path):
            self.fs.write_path(path, content)
        return f"sha256:{digest}"

    def get(self, ref: str) -> bytes:
        """An object's content, checked against its name (a changed object is an error)."""
        digest = ref.removeprefix("sha256:")
        data = self._read(object_path(digest))
        if data is None:
            raise AuditError(f"object {ref} is missing from {self.describe()}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise AuditError(f"object {ref} in {self.describe()} does not match its name: it was changed")
        return data

    def externalize(self, value: Any) -> Any:
        """``value`` with every string longer than the inline limit stored as an object."""
        if isinstance(value, str) and len(value.encode()) > self.storage.inline_limit_bytes:
            content = value.encode()
            return {BLOB_KEY: self.put(content), "size": len(content), "head": value[:200]}
        if isinstance(value, dict):
            return {k: self.externalize(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.externalize(v) for v in value]
        return value

    def resolve(self, value: Any) -> Any:
        """The inverse of ``externalize``: object references replaced by their text."""
        if isinstance(value, dict):
            if BLOB_KEY in value:
                return self.get(value[BLOB_KEY]).decode()
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    # filesystem access ----------------------------------------------------

    def _local_path(self, path: str) -> Path | None:
        return self.fs._resolve_path(path) if isinstance(self.fs, LocalFileSystem) else None

    def _exists(self, path: str) -> bool:
        local = self._local_path(path)
        if local is not None:
            return local.is_file()
        if isinstance(self.fs, RemoteFileSystem):
            return bool(self.fs.filesystem.exists(self.fs._resolve_path(path)))
        return self._read(path) is not None

    def _read(self, path: str) -> bytes | None:
        local = self._local_path(path)
        if local is not None:
            return local.read_bytes() if local.is_file() else None
        try:
            return self.fs.read_path(path)
        except (ValueError, FileNotFoundError, OSError):
            return None
