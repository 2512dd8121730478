"""Fixtures for mesh integration tests: a real cluster certificate."""
from __future__ import annotations

from pathlib import Path

import pytest

from meshway.pki import gen_cluster_cert


@pytest.fixture
def shared_cert(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "certs" / "cluster.crt", tmp_path / "certs" / "cluster.key"
    gen_cluster_cert(cert, key)
    return cert, key


@pytest.fixture
def proxy_factory():
    from tests.integration.stream.stream_for_test import ProxyForTest

    proxies = []

    def make(snapshot: dict, **settings: str):
        proxy = ProxyForTest(snapshot, "", None, **settings)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def echo():
    from tests.integration.stream.stream_for_test import EchoServerForTest

    server = EchoServerForTest()
    yield server
    server.close()
