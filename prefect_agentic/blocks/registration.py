"""How our block classes enter Prefect's block-class registry: by slug, without building their schema.

Prefect registers every ``Block`` subclass when the class is created, under
``Block.__dispatch_key__()``; Prefect's own version builds the class's whole
block schema (its JSON schema, twice with the checksum) only to read the slug
from it. Every cold flow-run process creates our block classes, so that cost
is paid per run (about 5 ms a block class on an idle machine; see
docs/guides/platform.md, "Running at scale"). The key is the same
string either way: ``block_schema_to_key`` returns the schema's block type slug,
which is ``get_block_type_slug()``.
"""

from __future__ import annotations


class RegisteredBySlug:
    """Mixin, listed before ``Block``: the registry key is the block type's slug, computed directly."""

    @classmethod
    def __dispatch_key__(cls) -> str | None:
        slug: str = cls.get_block_type_slug()  # type: ignore[attr-defined]  # from Block, next in the MRO
        return slug
