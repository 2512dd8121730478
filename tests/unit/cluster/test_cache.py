"""The data plane's disk cache and node id: written safely, read defensively."""
from __future__ import annotations

import gzip
import logging
import stat
import uuid

import pytest

from meshway.cluster import cache_path, load_cache, write_cache
from meshway.cluster._identity import load_node_id

SNAP = {"_format_version": "3.0", "services": [{"id": "s1"}]}


def test_roundtrip_mode_0600_and_no_temp_left(tmp_path):
    write_cache(tmp_path, SNAP, "h1")
    assert load_cache(tmp_path) == (SNAP, "h1")
    assert stat.S_IMODE(cache_path(tmp_path).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["config.cache.json.gz"]


def test_overwrite_replaces_and_tightens_mode(tmp_path):
    cache_path(tmp_path).write_bytes(b"old")
    cache_path(tmp_path).chmod(0o644)
    write_cache(tmp_path, SNAP, "h2")
    assert load_cache(tmp_path) == (SNAP, "h2")
    assert stat.S_IMODE(cache_path(tmp_path).stat().st_mode) == 0o600


def test_missing_cache_is_silent(tmp_path, caplog):
    assert load_cache(tmp_path) is None
    assert caplog.records == []


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:20] + bytes([b[20] ^ 0xFF]) + b[21:], "corrupted"),
        (lambda b: b"not gzip at all", "corrupted"),
        (lambda b: gzip.compress(b'{"snapshot": {}}'), "no config_hash"),
        (lambda b: gzip.compress(b'{"config_hash": "h", "snapshot": []}'), "no snapshot object"),
        (lambda b: b"", "corrupted"),
    ],
)
def test_damaged_cache_logs_and_returns_none(tmp_path, caplog, damage, reason):
    write_cache(tmp_path, SNAP, "h1")
    path = cache_path(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.ERROR, logger="meshway.cluster"):
        assert load_cache(tmp_path) is None
    [line] = [r.getMessage() for r in caplog.records]
    assert str(path) in line and reason in line and "ignoring it" in line


def test_node_id_is_persistent_and_repaired(tmp_path, caplog):
    first = load_node_id(tmp_path)
    assert uuid.UUID(first) and load_node_id(tmp_path) == first
    (tmp_path / "node_id").write_text("garbage")
    repaired = load_node_id(tmp_path)
    assert repaired != first and load_node_id(tmp_path) == repaired
    assert "node id file" in caplog.text
