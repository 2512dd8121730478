"""Upstreams through a real worker: round-robin takes its peer without per-request bookkeeping
(`ServiceTarget.direct`), and the balancers that keep state per request (passive health checks)
still get it."""
from __future__ import annotations

import ssl

import httpx
import pytest

from tests.integration.proxy.proxy_for_test import (
    Origin, WorkerProcess, route_for_test, service_for_test, snapshot_for_test, target_for_test, upstream_for_test,
)


@pytest.fixture
def origins():
    pair = [Origin(), Origin()]
    yield pair
    for o in pair:
        o.close()


def _start(tmp_path, origins, **upstream):
    up = upstream_for_test("pair.internal", **upstream)
    targets = [target_for_test(up, f"127.0.0.1:{o.port}") for o in origins]
    svc = service_for_test(host="pair.internal", port=80)
    return WorkerProcess(snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"], strip_path=False)],
                                           upstreams=[up], targets=targets), tmp_path / "w")


def test_round_robin_without_checks_alternates_between_its_targets(tmp_path, origins):
    w = _start(tmp_path, origins)
    try:
        with httpx.Client() as client:
            for _ in range(6):
                assert client.get(w.url + "/x").status_code == 200
    finally:
        w.stop()
    assert [len(o.requests) for o in origins] == [3, 3]


def test_passive_checks_still_see_each_answer(tmp_path, origins):
    # Two 500s from an address make it unhealthy (Kong's passive http_failures); once both are,
    # the balancer has no peer left: 503, as Kong's ring-balancer answers.
    w = _start(tmp_path, origins, healthchecks={"passive": {"unhealthy": {"http_failures": 2, "http_statuses": [500]}},
                                                "threshold": 0})
    try:
        with httpx.Client() as client:
            assert [client.get(w.url + "/status/500").status_code for _ in range(4)] == [500] * 4
            r = client.get(w.url + "/x")
    finally:
        w.stop()
    assert r.status_code == 503 and r.json() == {"message": "failure to get a peer from the ring-balancer"}
    assert [len(o.requests) for o in origins] == [2, 2]


def test_a_hashing_upstream_hashes_on_a_route_without_plugins(tmp_path, origins):
    # Kong hashes every request to a consistent-hashing upstream; a route without plugins took
    # the no-Context path, where the balancer got no request to hash (round-robin: 3 and 3)
    w = _start(tmp_path, origins, algorithm="consistent-hashing", hash_on="header", hash_on_header="x-user")
    try:
        with httpx.Client() as client:
            for _ in range(6):
                assert client.get(w.url + "/x", headers={"x-user": "alice"}).status_code == 200
    finally:
        w.stop()
    assert sorted(len(o.requests) for o in origins) == [0, 6]


def test_a_hashing_upstream_hashes_http2_streams_on_a_route_without_plugins(tmp_path, origins):
    from tests.integration.http2.h2_for_test import H2Worker

    up = upstream_for_test("pair.internal", algorithm="consistent-hashing", hash_on="header", hash_on_header="x-user")
    targets = [target_for_test(up, f"127.0.0.1:{o.port}") for o in origins]
    svc = service_for_test(host="pair.internal", port=80)
    w = H2Worker(snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"], strip_path=False)],
                                   upstreams=[up], targets=targets), tmp_path / "h2")
    try:
        with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=w.ca_file),
                          base_url=f"https://localhost:{w.tls}") as client:
            for _ in range(6):
                r = client.get("/x", headers={"x-user": "alice"})
                assert r.status_code == 200 and r.http_version == "HTTP/2"
    finally:
        w.stop()
    assert sorted(len(o.requests) for o in origins) == [0, 6]
