"""The cluster wire protocol as pure values: messages, config frames, versions, labels."""
from __future__ import annotations

import json
import zlib

import pytest

from meshway.cluster._protocol import (
    ProtocolError, decode_config, decode_message, encode_config, encode_message, parse_labels, version_incompatibility,
)

HELLO = dict(node_id="6f1c", hostname="dp", version="0.1.0", labels={}, config_hash="0" * 32, heartbeat=30)


def test_message_roundtrip():
    assert decode_message(encode_message("hello", **HELLO)) == {"type": "hello", **HELLO}


@pytest.mark.parametrize(
    "text, error",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "unknown control message type 'list'"),
        ('{"type": "launch"}', "unknown control message type 'launch'"),
        ('{"type": "ping"}', "ping message without 'config_hash'"),
        ('{"type": "applied", "config_hash": "h", "ms": "fast"}', "'ms' has the wrong type (str)"),
        ('{"type": "applied", "config_hash": "h", "ms": true}', "'ms' has the wrong type (bool)"),
        ('{"type": "ping", "config_hash": "' + "a" * 70000 + '"}', "exceeds"),
    ],
)
def test_bad_messages_name_the_problem(text, error):
    with pytest.raises(ProtocolError, match=error.replace("(", r"\(").replace(")", r"\)")):
        decode_message(text)


def test_config_frame_roundtrip_is_compressed():
    snapshot = {"_format_version": "3.0", "services": [{"id": str(i), "host": "a.test"} for i in range(200)]}
    frame = encode_config(snapshot, "abc")
    assert len(frame) < len(json.dumps(snapshot)) / 5
    assert decode_config(frame) == (snapshot, "abc")


@pytest.mark.parametrize(
    "frame, error",
    [
        (b"\x00garbage", "not zlib data"),
        (encode_config({"a": 1}, "h")[:-6], "truncated"),
        (zlib.compress(b"{nope"), "not JSON"),
        (zlib.compress(b'{"type": "other"}'), "not a reconfigure message"),
        (zlib.compress(b'{"type": "reconfigure", "config_hash": 1, "config_table": {}}'), "string config_hash"),
    ],
)
def test_bad_config_frames(frame, error):
    with pytest.raises(ProtocolError, match=error):
        decode_config(frame)


def test_decompression_bomb_is_bounded(monkeypatch):
    import meshway.cluster._protocol as protocol

    monkeypatch.setattr(protocol, "MAX_CONFIG_BYTES", 1000)
    with pytest.raises(ProtocolError, match="exceeds 1000 bytes"):
        decode_config(zlib.compress(b" " * 100_000))


@pytest.mark.parametrize(
    "cp, dp, compatible",
    [("3.4.1", "3.4.0", True), ("3.4.1", "3.4.9-rc1", True), ("3.4.1", "3.3.9", False),
     ("3.4.1", "2.4.1", False), ("3.4.1", "garbage", False), ("0.1.0", "0.1", True)],
)
def test_version_compatibility_is_same_major_minor(cp, dp, compatible):
    reason = version_incompatibility(cp, dp)
    assert (reason is None) is compatible
    if reason:
        assert reason == f"data plane version {dp} is incompatible with control plane version {cp} (3.4.x are accepted)"


def test_labels():
    assert parse_labels(("region:eu", "deployment: my-cloud ")) == {"region": "eu", "deployment": "my-cloud"}
    with pytest.raises(ValueError, match="invalid label 'region' "):
        parse_labels(("region",))
