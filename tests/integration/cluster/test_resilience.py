"""Control plane outages, version mismatch, bad peers, and the data plane's disk cache."""
from __future__ import annotations

import asyncio
import re
import ssl
import stat

from websockets.asyncio.client import connect

from meshway.cluster import cache_path, load_cache
from tests.integration.cluster.cluster_for_test import Cluster_for_test, run_for_test, wait_for_test


def _retry_delays(caplog) -> list[float]:
    lines = [r.getMessage() for r in caplog.records if "connection to control plane" in r.getMessage()]
    return [float(m[1]) for m in (re.search(r"retrying in ([\d.]+) s", line) for line in lines) if m]


def test_control_plane_gone_then_back_backoff_and_reconvergence(tmp_path, shared_cert, cluster_log):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            port = c.port
            client, applier = await c.start_dp(backoff_initial=0.05, backoff_cap=0.4)
            await wait_for_test(lambda: applier.hashes)
            await c.server.stop()
            await wait_for_test(lambda: not client.connected)
            await asyncio.sleep(1.5)
            delays = _retry_delays(cluster_log)
            c.source.bump()  # the config changed while the CP was away
            await c.start_cp(port=port)
            took = await wait_for_test(lambda: applier.hashes[-1] == c.source.hash, timeout=3)
            return delays, took, client.connected, applier.hashes
        finally:
            await c.close()

    delays, took, connected, hashes = run_for_test(scenario())
    # one line per attempt, growing delays capped at 0.4 s: about 6 attempts in 1.5 s, not hundreds
    assert 3 <= len(delays) <= 12
    assert all(d <= 0.4 for d in delays)
    assert delays[2] > delays[0]
    assert connected and len(hashes) == 2 and took < 3


def test_incompatible_version_is_told_logged_and_listed(tmp_path, shared_cert, cluster_log):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp(version="3.4.1")
            _, old = await c.start_dp("old", version="3.3.9", backoff_initial=0.5, backoff_cap=1)
            _, same = await c.start_dp("new", version="3.4.0")
            await wait_for_test(lambda: same.hashes and any("refused this data plane" in r.getMessage()
                                                            for r in cluster_log.records))
            return old.hashes, {p["hostname"]: p["sync_status"] for p in c.server.data_planes()}
        finally:
            await c.close()

    old_applied, status = run_for_test(scenario())
    assert old_applied == []
    assert status == {"old": "version_incompatible", "new": "normal"}
    told = [r.getMessage() for r in cluster_log.records if "refused this data plane" in r.getMessage()]
    assert "data plane version 3.3.9 is incompatible with control plane version 3.4.1 (3.4.x are accepted)" in told[0]


def test_garbage_from_one_data_plane_closes_only_that_connection(tmp_path, shared_cert, cluster_log):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            ctx.load_cert_chain(*shared_cert)
            async with connect(f"wss://127.0.0.1:{c.port}/v1/outlet", ssl=ctx, proxy=None) as ws:
                await ws.send('{"type": "hello", "node_id": "not-a-uuid"}')
                await wait_for_test(lambda: ws.close_code is not None)
                code = ws.close_code
            _, applier = await c.start_dp()
            await wait_for_test(lambda: applier.hashes)
            return code, [p["hostname"] for p in c.server.data_planes()]
        finally:
            await c.close()

    code, listed = run_for_test(scenario())
    assert code == 1002 and listed == ["dp1"]
    assert any("protocol error: hello message without 'hostname'" in r.getMessage() for r in cluster_log.records)


def test_cache_written_0600_after_apply_and_not_on_reject(tmp_path, shared_cert):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            client, applier = await c.start_dp()
            await wait_for_test(lambda: applier.hashes and cache_path(tmp_path / "dp1").exists())
            first = load_cache(tmp_path / "dp1")
            bad = c.source.bump()
            applier.reject[bad] = "nope"
            c.server.notify_changed()
            await wait_for_test(lambda: c.server.data_planes()[0]["last_error"])
            return applier.calls[0], first, load_cache(tmp_path / "dp1")
        finally:
            await c.close()

    applied, first, after_reject = run_for_test(scenario())
    assert first == applied and after_reject == applied
    assert stat.S_IMODE(cache_path(tmp_path / "dp1").stat().st_mode) == 0o600
