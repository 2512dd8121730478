"""Hostname targets against a real DNS server: SRV ports and weights, record TTLs, A, hosts file."""
from __future__ import annotations

import asyncio
from collections import Counter

from balancer_servers_for_test import balancers_for_test, target_health_for_test, wait_for_test
from dns_server_for_test import DnsServer_for_test, srv_zone_for_test

from meshway.proxy.balancer import DnsResolver, HealthChecker

SVC = "svc.service.consul"
NODES = {"a.node.consul": "127.0.0.1", "b.node.consul": "127.0.0.2", "c.node.consul": "127.0.0.3"}


def _zone(entries, ttl=1) -> str:
    return srv_zone_for_test(SVC, entries, ttl=ttl, hosts=NODES) + "web.service.consul. 60 IN A 127.0.0.9\n"


def _run(zone: str, targets: list[str], body, *, additional: bool = True):
    async def scenario():
        server = DnsServer_for_test(zone, additional=additional).start()
        checker = HealthChecker(dns_ttl=30, resolver=DnsResolver([server.address], timeout=0.5))
        balancers = balancers_for_test(targets)
        await checker.start(balancers)
        try:
            return await body(server, checker, balancers["up"])
        finally:
            await checker.stop()
            server.stop()
    return asyncio.run(scenario())


def _addresses(checker, target: str) -> list[tuple[str, int, float]]:
    entry = next(t for t in checker.health("up")["data"] if t["target"] == target)
    return [(a["ip"], a["port"], a["weight"]) for a in entry["data"]["addresses"]]


def test_srv_entries_of_the_lowest_priority_become_peers_with_their_port_and_weight():
    zone = _zone([(1, 30, 7001, "a.node.consul"), (1, 10, 7002, "b.node.consul"),
                  (2, 50, 7003, "c.node.consul")])

    async def body(server, checker, balancer):
        picks = Counter((p.host, p.port) for p in (balancer.select() for _ in range(400)))
        return _addresses(checker, SVC), picks, target_health_for_test(checker, SVC)

    addresses, picks, health = _run(zone, [SVC], body)
    assert addresses == [("127.0.0.1", 7001, 30), ("127.0.0.2", 7002, 10)]
    assert picks == {("127.0.0.1", 7001): 300, ("127.0.0.2", 7002): 100}
    assert health == "HEALTHCHECKS_OFF"


def test_srv_targets_missing_from_the_additional_section_are_asked_for_by_a():
    zone = _zone([(1, 1, 7001, "a.node.consul"), (1, 0, 7002, "b.node.consul")])

    async def body(server, checker, balancer):
        return _addresses(checker, SVC), server.asked

    addresses, asked = _run(zone, [SVC], body, additional=False)
    assert addresses == [("127.0.0.1", 7001, 1), ("127.0.0.2", 7002, 1)]  # SRV weight 0 -> 1
    assert ("a.node.consul", "A") in asked and ("b.node.consul", "A") in asked


def test_a_changed_srv_answer_moves_peers_at_the_record_ttl():
    async def body(server, checker, balancer):
        first = sorted({(p.host, p.port) for p in balancer.peers})
        server.set_zone(_zone([(1, 5, 7009, "c.node.consul")]))
        await wait_for_test(lambda: [(p.host, p.port) for p in balancer.peers]
                            == [("127.0.0.3", 7009)], timeout=5)
        return first, _addresses(checker, SVC)

    first, later = _run(_zone([(1, 1, 7001, "a.node.consul"), (1, 1, 7002, "b.node.consul")]),
                        [SVC], body)
    assert first == [("127.0.0.1", 7001), ("127.0.0.2", 7002)]
    assert later == [("127.0.0.3", 7009, 5)]  # dns_ttl is 30 s: the 1 s record TTL drove it


def test_a_failed_lookup_keeps_the_last_good_answer():
    async def body(server, checker, balancer):
        before = list(balancer.peers)
        server.set_zone("")  # NXDOMAIN from now on (and getaddrinfo knows no such name)
        asked = len(server.asked)
        await wait_for_test(lambda: len(server.asked) >= asked + 2, timeout=5)
        await checker.refresh_dns()
        return before, list(balancer.peers), target_health_for_test(checker, SVC)

    before, after, health = _run(_zone([(1, 1, 7001, "a.node.consul")]), [SVC], body)
    assert before == after and after[0].port == 7001 and health != "DNS_ERROR"


def test_a_only_names_and_hosts_file_names_get_the_targets_port():
    async def body(server, checker, balancer):
        return (_addresses(checker, "web.service.consul:9000"),
                _addresses(checker, "localhost:9001"), server.asked)

    web, local, asked = _run(_zone([]), ["web.service.consul:9000", "localhost:9001"], body)
    assert web == [("127.0.0.9", 9000, 100)] and local == [("127.0.0.1", 9001, 100)]
    assert ("web.service.consul", "SRV") in asked and ("web.service.consul", "A") in asked
    assert not [q for q in asked if q[0] == "localhost"]  # /etc/hosts answers, as Kong's client


def test_last_puts_the_type_that_worked_first():
    async def body(server, checker, balancer):
        server.asked.clear()
        await checker.refresh_dns()  # not due yet: nothing asked
        nothing = list(server.asked)
        for target in balancer.targets:
            target.resolved_at = 0.0001
        await checker.refresh_dns()
        return nothing, sorted(server.asked)

    nothing, asked = _run(_zone([(1, 1, 7001, "a.node.consul")]),
                          [SVC, "web.service.consul:9000"], body)
    assert nothing == []
    assert asked == [(SVC, "SRV"), ("web.service.consul", "A")]  # LAST: no SRV retry for web
