"""Where audit logs and large run outputs are kept: the audit storage block."""

from __future__ import annotations

import os

from prefect.blocks.core import Block
from prefect.filesystems import SMB, LocalFileSystem, RemoteFileSystem, WritableFileSystem
from pydantic import Field

from prefect_agentic.blocks.branding import documentation_url, logo_url
from prefect_agentic.blocks.registration import RegisteredBySlug
from prefect_agentic.settings import agentic_home

AUDIT_BLOCK_ENV = "AGENTIC_AUDIT_BLOCK"
"""Names a saved ``AuditStorage`` block every run and ``agentic audit|stats|replay`` use."""


def _local_audit_dir() -> LocalFileSystem:
    return LocalFileSystem(basepath=str(agentic_home() / "audit"))


class AuditStorage(RegisteredBySlug, Block):
    """A filesystem block holding each run's audit log and its content-addressed objects.

    Local by default (``$AGENTIC_HOME/audit``). Any writable Prefect
    filesystem block works (``RemoteFileSystem`` on ``s3://…``, an SMB share,
    or, named in ``filesystem_block``, prefect-aws's ``S3Bucket``), so logs outlive the worker that wrote them
    and can be verified or replayed from another machine.
    """

    _block_type_name = "Agentic Audit Storage"
    _block_type_slug = "agentic-audit-storage"
    _logo_url = logo_url("agentic-audit-storage")  # type: ignore[assignment]
    _documentation_url = documentation_url("agentic-audit-storage")  # type: ignore[assignment]
    _description = (
        "Filesystem for prefect-agentic audit logs (hash-chained JSON lines) and content-addressed "
        "run outputs (diffs, test reports, captured output)."
    )

    filesystem: LocalFileSystem | RemoteFileSystem | SMB = Field(
        default_factory=_local_audit_dir,
        description="Filesystem the logs and objects are written to (default: $AGENTIC_HOME/audit).",
    )
    filesystem_block: str | None = Field(
        default=None,
        description=("A saved writable filesystem block of any type, as 'block-type-slug/name' "
                     "(e.g. 's3-bucket/audit' from prefect-aws); used instead of filesystem."),
    )
    inline_limit_bytes: int = Field(
        default=2000, ge=64,
        description="Longer text in a record is stored as a content-addressed object and referenced.",
    )

    @classmethod
    def configured(cls, name: str | None = None) -> AuditStorage:
        """The block named ``name`` or by ``$AGENTIC_AUDIT_BLOCK``; else local storage."""
        name = name or os.environ.get(AUDIT_BLOCK_ENV)
        return cls.load(name) if name else cls()

    def writable_filesystem(self) -> WritableFileSystem:
        """The filesystem to use: the referenced block if one is named, else ``filesystem``."""
        if self.filesystem_block is None:
            return self.filesystem
        found = Block.load(self.filesystem_block)
        if not isinstance(found, WritableFileSystem):
            raise ValueError(f"filesystem_block {self.filesystem_block!r} is a {type(found).__name__}, "
                             "not a writable filesystem block")
        return found
