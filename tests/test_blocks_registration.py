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
from typing import Any

import pytest
from prefect.blocks.core import Block, block_schema_to_key
from prefect.client.orchestration import SyncPrefectClient
from prefect.utilities.dispatch import lookup_type
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

import prefect_agentic.blocks as blocks
from prefect_agentic.blocks.branding import LOGO_DIR
from prefect_agentic.blocks.registration import RegisteredBySlug


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


@pytest.mark.parametrize("name", blocks.BLOCK_TYPES)
def test_each_block_class_is_found_by_the_key_prefect_derives_from_its_schema(name: str) -> None:
    """Our block classes enter Prefect's registry by slug without building their schema; the key is
    the one Prefect's own ``__dispatch_key__`` reads from the full block schema, and the lookup a
    block parameter's document goes through (``Block.__new__`` with its slug) finds the class."""
    cls = getattr(blocks, name)
    key = block_schema_to_key(cls._to_block_schema())
    assert cls.__dispatch_key__() == key
    assert lookup_type(Block, key) is cls
    assert Block.get_block_class_from_key(cls.get_block_type_slug()) is cls


class _SchemaCounted:
    """A field type that counts how often a JSON schema is built for it."""

    built = 0

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.str_schema()

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        cls.built += 1
        return handler(schema)


def test_creating_a_block_class_builds_no_schema() -> None:
    """Every cold flow-run process creates our block classes; Prefect's own registration would
    build each one's JSON schema (twice) just to read its slug."""
    before = _SchemaCounted.built

    class Probe(RegisteredBySlug, Block):
        _block_type_slug = "agentic-test-probe"
        value: _SchemaCounted | None = None

    assert _SchemaCounted.built == before
    assert lookup_type(Block, "agentic-test-probe") is Probe
    Probe.model_json_schema()
    assert _SchemaCounted.built > before  # the counter does see a schema being built
