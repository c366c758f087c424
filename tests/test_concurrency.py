"""Named global concurrency limits and the clients behind the slot calls (a real Prefect server)."""

from __future__ import annotations

import ssl

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.concurrency import (
    _tls_context,
    ensure_limit,
    forget_limit,
    forget_limit_names,
    limit_names,
)
from prefect_agentic.sandbox.runner import _client


@pytest.mark.usefixtures("prefect_api")
def test_one_read_of_the_limit_names_tells_which_limits_exist_and_a_missing_one_is_created() -> None:
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="test-existing", limit=2))
    forget_limit_names()
    try:
        assert "test-existing" in limit_names() and "test-made-here" not in limit_names()
        ensure_limit("test-existing", 7)  # an existing limit keeps its size
        ensure_limit("test-made-here", 3)
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name("test-existing").limit == 2
            assert client.read_global_concurrency_limit_by_name("test-made-here").limit == 3
    finally:
        forget_limit("test-existing")
        forget_limit("test-made-here")
    assert {"test-existing", "test-made-here"}.isdisjoint(limit_names())  # forgetting a limit drops the names read


def test_a_plain_http_api_gets_a_tls_context_that_trusts_nothing_and_https_gets_the_ca_bundle() -> None:
    plain = _tls_context("http://127.0.0.1:4200/api")
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0  # the bundle was not loaded (~20 ms of CPU a process)
    assert _tls_context("https://prefect.example/api").cert_store_stats()["x509_ca"] > 0


@pytest.mark.docker
def test_a_process_keeps_one_docker_client_per_engine() -> None:
    settings = SandboxSettings()
    first = _client(settings)
    assert _client(settings) is first
    first.close()  # a client whose connections are gone still answers, or is replaced
    assert _client(settings).ping()
