"""Pushing configuration from a real control plane to real data planes over mTLS websockets."""
from __future__ import annotations

import asyncio
import socket

import httpx
from starlette.applications import Starlette

from tests.integration.cluster.cluster_for_test import Cluster_for_test, run_for_test, wait_for_test


def test_push_on_connect_reports_applied_and_lists_the_data_plane(tmp_path, shared_cert, loop_kind):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            client, applier = await c.start_dp("dp1", settings={"cluster_dp_labels": "region:eu,tier:edge"})
            await wait_for_test(lambda: applier.hashes == [c.source.hash])
            await wait_for_test(lambda: c.server.data_planes() and c.server.data_planes()[0]["last_apply_ms"])
            return client, c.server.data_planes(), c.server.status_map(), applier.calls[0][0]
        finally:
            await c.close()

    client, planes, status, snapshot = run_for_test(scenario(), loop=loop_kind)
    assert snapshot["services"][0]["id"] == "svc-0"
    assert len(planes) == 1
    dp = planes[0]
    assert dp["id"] == client.node_id and dp["hostname"] == "dp1" and dp["ip"] == "127.0.0.1"
    assert dp["sync_status"] == "normal" and dp["config_hash"] == client.config_hash
    assert dp["labels"] == {"region": "eu", "tier": "edge"}
    assert dp["last_apply_ms"] == 1.5 and dp["last_error"] is None
    assert dp["cert_details"]["expiry_timestamp"] > 0
    assert status == {client.node_id: {"config_hash": client.config_hash, "hostname": "dp1", "ip": "127.0.0.1",
                                       "last_seen": dp["last_seen"]}}


def test_notify_changed_reaches_every_data_plane_within_one_second(tmp_path, shared_cert):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            dps = [await c.start_dp(f"dp{i}") for i in range(3)]
            await wait_for_test(lambda: all(a.hashes for _, a in dps))
            new = c.source.bump()
            c.server.notify_changed()
            took = await wait_for_test(lambda: all(a.hashes[-1] == new for _, a in dps), timeout=1.0)
            return took, [a.hashes for _, a in dps]
        finally:
            await c.close()

    took, hashes = run_for_test(scenario())
    assert took < 1.0
    assert all(len(h) == 2 for h in hashes)


def test_a_burst_of_changes_is_coalesced_into_one_read_and_one_push(tmp_path, shared_cert):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            _, applier = await c.start_dp()
            await wait_for_test(lambda: applier.hashes)
            reads_before = c.source.reads
            for _ in range(50):
                c.source.bump()
                c.server.notify_changed()
            await wait_for_test(lambda: applier.hashes[-1] == c.source.hash)
            return c.source.reads - reads_before, applier.hashes
        finally:
            await c.close()

    reads, hashes = run_for_test(scenario())
    assert reads == 1
    assert len(hashes) == 2


def test_unchanged_hash_is_not_applied_again(tmp_path, shared_cert):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            client, applier = await c.start_dp()
            await wait_for_test(lambda: applier.hashes)
            c.server.notify_changed()  # nothing changed in the store
            await wait_for_test(lambda: c.source.reads >= 2)
            await client.stop()
            # Reconnect with the hash it already runs: the CP must not push it again.
            again, applier2 = await c.start_dp("dp1", config_hash=client.config_hash)
            await wait_for_test(lambda: again.connected)
            await wait_for_test(lambda: c.server.data_planes()[0]["config_hash"] == client.config_hash)
            return applier.hashes, applier2.hashes
        finally:
            await c.close()

    first, second = run_for_test(scenario())
    assert len(first) == 1
    assert second == []


def test_rejected_config_is_reported_listed_and_not_resent(tmp_path, shared_cert):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            client, applier = await c.start_dp(settings={"cluster_data_plane_heartbeat": "0.05"})
            await wait_for_test(lambda: applier.hashes)
            good = client.config_hash
            bad = c.source.bump()
            applier.reject[bad] = "route r1: invalid regex '~/(['"
            c.server.notify_changed()
            await wait_for_test(lambda: c.server.data_planes()[0]["last_error"])
            await wait_for_test(lambda: c.server.data_planes()[0]["last_seen"] and len(applier.hashes) == 2)
            await asyncio.sleep(0.3)  # several heartbeats with the old hash
            return good, bad, client.config_hash, c.server.data_planes()[0], applier.hashes
        finally:
            await c.close()

    good, bad, running, dp, hashes = run_for_test(scenario())
    assert running == good
    assert dp["config_hash"] == good
    assert dp["last_error"] == f"config {bad} rejected: route r1: invalid regex '~/(['"
    assert hashes == [good, bad]


def test_heartbeat_refreshes_last_seen_and_admin_routes_serve_both_shapes(tmp_path, shared_cert):
    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp()
            client, applier = await c.start_dp(settings={"cluster_data_plane_heartbeat": "0.2"})
            await wait_for_test(lambda: applier.hashes)
            seen = c.server.data_planes()[0]["last_seen"]  # whole seconds, as Kong shows it
            await wait_for_test(lambda: c.server.data_planes()[0]["last_seen"] > seen, timeout=2.5)
            app = Starlette(routes=c.server.admin_routes())
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as http:
                planes = (await http.get("/clustering/data-planes")).json()
                status = (await http.get("/clustering/status")).json()
            return client, planes, status
        finally:
            await c.close()

    client, planes, status = run_for_test(scenario())
    assert planes["next"] is None and [p["id"] for p in planes["data"]] == [client.node_id]
    assert status[client.node_id]["config_hash"] == client.config_hash


def test_control_plane_serves_on_a_pre_bound_socket(tmp_path, shared_cert):
    # The node binds cluster_listen itself (privileges, SO_REUSEPORT) and hands the socket over.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def scenario():
        c = Cluster_for_test(tmp_path, *shared_cert)
        try:
            await c.start_cp(sock=sock)
            _, applier = await c.start_dp(port=port)
            await wait_for_test(lambda: applier.hashes)
            return c.server.address[1], applier.hashes
        finally:
            await c.close()

    bound, hashes = run_for_test(scenario())
    assert bound == port and len(hashes) == 1
