"""Fixtures for cluster integration tests."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from meshway.pki import gen_cluster_cert


@pytest.fixture
def shared_cert(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "certs" / "cluster.crt", tmp_path / "certs" / "cluster.key"
    gen_cluster_cert(cert, key)
    return cert, key


@pytest.fixture
def cluster_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="meshway.cluster")
    return caplog


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Run the test on both event loops: uvloop differs in transport details that matter here."""
    return request.param
