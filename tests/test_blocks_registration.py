"""`prefect block register -m prefect_agentic` (the form Prefect collections use) registers every
block type on a real Prefect server, each with a logo the browser can load with no internet
(served from the docs site, here a local HTTP server) and a link into the blocks reference."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient

import prefect_agentic.blocks as blocks
from prefect_agentic.blocks.branding import LOGO_DIR


@pytest.fixture
def docs_site(tmp_path: Path) -> Iterator[str]:
    """The logos where the docs site serves them (assets/logos/), on 127.0.0.1."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "logos").symlink_to(LOGO_DIR)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def test_block_register_m_prefect_agentic_registers_every_block_type(prefect_api: str, docs_site: str) -> None:
    root = docs_site
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "AGENTIC_DOCS_URL": root}
    done = subprocess.run([str(Path(sys.executable).with_name("prefect")), "block", "register", "-m",
                           "prefect_agentic"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    slugs = {getattr(blocks, name).get_block_type_slug() for name in blocks.BLOCK_TYPES}
    assert len(slugs) == len(blocks.BLOCK_TYPES)  # no two types share a slug
    assert f"Successfully registered {len(slugs)} blocks" in done.stdout, done.stdout
    with SyncPrefectClient(prefect_api) as client:
        for slug in sorted(slugs):
            block_type = client.read_block_type_by_slug(slug)
            assert block_type.description and len(block_type.description) > 40, slug
            assert str(block_type.documentation_url) == f"{root}reference/blocks/#{slug}"
            logo = str(block_type.logo_url)
            assert logo == f"{root}assets/logos/{slug}.svg"
            with urllib.request.urlopen(logo, timeout=10) as answer:
                assert answer.status == 200
                assert answer.headers["Content-Type"] == "image/svg+xml"
                assert answer.read().startswith(b"<svg ")
