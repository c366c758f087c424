"""Default documents of the pack's blocks on the current Prefect API.

A team starts from saved documents it can edit in the UI (Blocks page) rather
than from defaults buried in code; flows and deployments then refer to them
by name. Blocks that have no sensible default (an LLM endpoint needs a URL
and a model) get their type registered but no document.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect.blocks.core import Block
from prefect.exceptions import ObjectNotFound
from pydantic import ValidationError

import prefect_agentic.blocks as pack_blocks

DEFAULT_DOCUMENT = "default"


@dataclass(frozen=True)
class DefaultDocument:
    """What ``save_default_documents`` did for one block type."""

    block_type: str
    name: str
    outcome: str  # "created", "kept" (already there) or "no defaults"


def pack_block_types() -> list[type[Block]]:
    """Every block class the pack exports (``prefect_agentic.blocks.__all__``)."""
    found = (getattr(pack_blocks, name) for name in pack_blocks.__all__)
    return [cls for cls in found if isinstance(cls, type) and issubclass(cls, Block)]


def save_default_documents(name: str = DEFAULT_DOCUMENT, overwrite: bool = False) -> list[DefaultDocument]:
    """Register each pack block type and save a document ``name`` with its defaults.

    Existing documents are kept unless ``overwrite``; nothing else is changed.
    """
    done = []
    for cls in pack_block_types():
        cls.register_type_and_schema()
        slug = cls.get_block_type_slug()
        try:
            default = cls()
        except ValidationError:
            done.append(DefaultDocument(slug, name, "no defaults"))
            continue
        if not overwrite and _exists(cls, name):
            done.append(DefaultDocument(slug, name, "kept"))
            continue
        default.save(name, overwrite=overwrite)
        done.append(DefaultDocument(slug, name, "created"))
    return done


def _exists(cls: type[Block], name: str) -> bool:
    try:
        cls.load(name)
    except (ValueError, ObjectNotFound):
        return False
    return True
