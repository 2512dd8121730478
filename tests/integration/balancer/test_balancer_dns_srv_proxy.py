"""End to end: a worker with `dns_resolver` set to a real DNS server proxies by SRV records."""
from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from dns_server_for_test import DnsServer_for_test, srv_zone_for_test

from tests.integration.proxy.proxy_for_test import (
    Origin, WorkerProcess, route_for_test, service_for_test, snapshot_for_test, target_for_test,
    upstream_for_test,
)

SVC = "svc.service.consul"
NODES = {"a.node.consul": "127.0.0.1", "b.node.consul": "127.0.0.1"}


@pytest.fixture(scope="module")
def origins():
    pair = Origin(), Origin()
    yield pair
    for origin in pair:
        origin.close()


@pytest.fixture(scope="module")
def dns(origins):
    a, b = origins
    server = DnsServer_for_test(_zone([(1, 3, a.port, "a.node.consul"),
                                       (1, 1, b.port, "b.node.consul")])).start()
    yield server
    server.stop()


def _zone(entries) -> str:
    return srv_zone_for_test(SVC, entries, ttl=1, hosts=NODES) + "web.service.consul. 1 IN A 127.0.0.1\n"


def _balanced(path: str, target: str) -> tuple[dict, dict, dict, dict]:
    up = upstream_for_test(f"{path}-up")
    service = service_for_test(host=up["name"], port=80, retries=0)
    return up, target_for_test(up, target), service, route_for_test(service, paths=[f"/{path}"])


@pytest.fixture(scope="module")
def worker(origins, dns, tmp_path_factory):
    a, b = origins
    parts = [_balanced("srv", SVC), _balanced("web", f"web.service.consul:{b.port}"),
             _balanced("local", f"localhost:{a.port}")]
    snap = snapshot_for_test(upstreams=[p[0] for p in parts], targets=[p[1] for p in parts],
                             services=[p[2] for p in parts], routes=[p[3] for p in parts])
    w = WorkerProcess(snap, tmp_path_factory.mktemp("dns-srv"),
                      env={"MESHWAY_DNS_RESOLVER": f"127.0.0.1:{dns.port}"})
    yield w
    w.stop()


def _hits(worker, origins, path: str, n: int) -> Counter:
    before = [len(o.requests) for o in origins]
    with httpx.Client(base_url=worker.url, timeout=5) as client:
        for _ in range(n):
            assert client.get(f"/{path}").status_code == 200
    return Counter({name: len(o.requests) - was
                    for name, o, was in zip("ab", origins, before) if len(o.requests) > was})


def test_srv_records_spread_requests_by_weight_over_their_ports(worker, origins):
    assert _hits(worker, origins, "srv", 40) == {"a": 30, "b": 10}


def test_an_a_only_name_and_localhost_use_the_targets_port(worker, origins):
    assert _hits(worker, origins, "web", 4) == {"b": 4}
    assert _hits(worker, origins, "local", 4) == {"a": 4}


def test_a_new_dns_answer_moves_traffic_without_a_restart(worker, origins, dns):
    a, b = origins
    dns.set_zone(_zone([(1, 1, b.port, "b.node.consul")]))
    deadline = time.monotonic() + 10
    while _hits(worker, origins, "srv", 8) != {"b": 8}:
        assert time.monotonic() < deadline, "traffic did not move to the new SRV answer"
        time.sleep(0.2)
    dns.set_zone(_zone([(1, 3, a.port, "a.node.consul"), (1, 1, b.port, "b.node.consul")]))
    deadline = time.monotonic() + 10
    while _hits(worker, origins, "srv", 8) != {"a": 6, "b": 2}:
        assert time.monotonic() < deadline, "traffic did not come back"
        time.sleep(0.2)
    assert worker.alive()


def test_names_in_dns_hostsfile_are_answered_before_any_dns_server(origins, tmp_path):
    """`dns_hostsfile`: a name only that file knows reaches its origin; no DNS server is asked."""
    a, _ = origins
    hosts = tmp_path / "hosts"
    hosts.write_text("# only this node's view\n127.0.0.1   billing.internal.test\n")
    part = _balanced("billing", f"billing.internal.test:{a.port}")
    snap = snapshot_for_test(upstreams=[part[0]], targets=[part[1]], services=[part[2]], routes=[part[3]])
    w = WorkerProcess(snap, tmp_path / "prefix", env={"MESHWAY_DNS_HOSTSFILE": str(hosts),
                                                     "MESHWAY_DNS_RESOLVER": "127.0.0.1:9"})  # nothing there
    try:
        assert _hits(w, origins, "billing", 3) == {"a": 3}
    finally:
        w.stop()
