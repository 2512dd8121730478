"""Data-plane bookkeeping behind /clustering/data-planes and /clustering/status."""
from __future__ import annotations

import time

from meshway.cluster._registry import DataPlaneRecord, Registry


def _record(node_id: str = "a", **kw) -> DataPlaneRecord:
    fields = dict(id=node_id, ip="10.0.0.1", hostname="dp", version="0.1.0", labels={"r": "eu"},
                  config_hash="h0", cert_expiry=1900000000)
    return DataPlaneRecord(**{**fields, **kw})


def test_kong3_fields_and_ours():
    reg = Registry()
    reg.hello(_record(sync_status="normal"))
    [dp] = reg.data_planes()
    assert {"id", "ip", "hostname", "version", "sync_status", "config_hash", "last_seen", "cert_details",
            "labels", "last_apply_ms", "last_error"} <= dp.keys()
    assert dp["cert_details"] == {"expiry_timestamp": 1900000000}
    assert isinstance(dp["last_seen"], int)


def test_applied_and_rejected_update_hash_and_error():
    reg = Registry()
    reg.hello(_record())
    reg.rejected("a", "h1", "bad route")
    assert reg.data_planes()[0]["last_error"] == "config h1 rejected: bad route"
    assert reg.data_planes()[0]["config_hash"] == "h0"
    reg.applied("a", "h2", 3.25)
    dp = reg.data_planes()[0]
    assert (dp["config_hash"], dp["last_apply_ms"], dp["last_error"]) == ("h2", 3.25, None)


def test_reconnect_keeps_history_and_status_map_shape():
    reg = Registry()
    reg.hello(_record())
    reg.applied("a", "h1", 2)
    reg.hello(_record(ip="10.0.0.9", config_hash="h1"))
    assert reg.data_planes()[0]["last_apply_ms"] == 2
    assert reg.status_map() == {"a": {"config_hash": "h1", "hostname": "dp", "ip": "10.0.0.9",
                                      "last_seen": int(reg.get("a").last_seen)}}


def test_silent_data_planes_are_purged_after_the_delay():
    reg = Registry(purge_delay=60)
    reg.hello(_record("old", last_seen=time.time() - 61))
    reg.hello(_record("new"))
    assert [d["id"] for d in reg.data_planes()] == ["new"]
