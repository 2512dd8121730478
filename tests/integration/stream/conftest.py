"""Fixtures for stream integration tests: proxies, child processes, certificates."""
from __future__ import annotations

import pytest

from tests.integration.stream.stream_for_test import EchoServerForTest, PkiForTest, Processes, ProxyForTest


@pytest.fixture
def procs():
    started = Processes()
    yield started
    started.stop_all()


@pytest.fixture
def proxy_factory():
    proxies: list[ProxyForTest] = []

    def make(snapshot: dict, listen_flags: str = "", access_log=None, **settings: str) -> ProxyForTest:
        proxy = ProxyForTest(snapshot, listen_flags, access_log, **settings)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def pki(tmp_path):
    return PkiForTest(tmp_path)


@pytest.fixture
def echo():
    server = EchoServerForTest()
    yield server
    server.close()
