"""Where the Prefect UI finds the block types' logos and documentation.

Prefect stores a block type's ``logo_url`` and ``documentation_url`` as web
addresses (the client validates them as http(s) URLs, so ``data:`` URLs are
refused) and the UI loads the logo from the browser. The logos ship in this
package (``logos/``) and the documentation site serves them at
``assets/logos/<slug>.svg``, so both URLs point into the docs site:
``$AGENTIC_DOCS_URL``, by default the site that ``make docs`` serves on
127.0.0.1:8000, which works with no internet. A team that publishes the site
elsewhere sets ``AGENTIC_DOCS_URL`` before ``prefect block register -m prefect_agentic``.
"""

from __future__ import annotations

import os
from pathlib import Path

LOGO_DIR = Path(__file__).with_name("logos")
DEFAULT_DOCS_URL = "http://127.0.0.1:8000/"


def docs_url() -> str:
    """The documentation site's base URL, ending in ``/``."""
    return os.environ.get("AGENTIC_DOCS_URL", DEFAULT_DOCS_URL).rstrip("/") + "/"


def logo_url(slug: str) -> str:
    """The logo of the block type ``slug``, served by the docs site."""
    if not (LOGO_DIR / f"{slug}.svg").is_file():
        raise FileNotFoundError(f"no logo for block type '{slug}' in {LOGO_DIR}")
    return f"{docs_url()}assets/logos/{slug}.svg"


def documentation_url(slug: str) -> str:
    """The block type's section of the blocks reference."""
    return f"{docs_url()}reference/blocks/#{slug}"


def block_classes() -> list[type]:
    """Every block type of prefect-agentic, in the order the reference lists them."""
    from prefect_agentic import blocks

    return [getattr(blocks, name) for name in blocks.BLOCK_TYPES]
