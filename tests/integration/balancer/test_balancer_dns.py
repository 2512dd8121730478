"""Hostname targets: resolved before serving, re-resolved at the TTL, DNS_ERROR when they fail."""
from __future__ import annotations

import asyncio

from balancer_servers_for_test import (TcpServer_for_test, active_for_test, balancers_for_test,
                                       target_health_for_test, wait_for_test)

from meshway.proxy.balancer import HealthChecker


def test_localhost_target_resolves_and_is_checked():
    async def scenario():
        server = await TcpServer_for_test().start()
        target = f"localhost:{server.port}"
        balancers = balancers_for_test([target], active_for_test("tcp", tcp_failures=1))
        checker = HealthChecker()
        await checker.start(balancers)
        try:
            peer = balancers["up"].select()  # resolved by start(), before any traffic
            await wait_for_test(lambda: server.accepted >= 1)
            return peer, checker.health("up")["data"][0]
        finally:
            await checker.stop()
            await server.close()

    peer, entry = asyncio.run(scenario())
    assert (peer.host, peer.hostname, peer.target) == ("127.0.0.1", "localhost", entry["target"])
    assert entry["health"] == "HEALTHY"
    assert {"ip": "127.0.0.1", "port": peer.port, "health": "HEALTHY",
            "weight": 100} in entry["data"]["addresses"]


def test_unresolvable_hostname_is_dns_error_and_gives_no_peer():
    async def scenario():
        balancers = balancers_for_test(["no-such-host.invalid:80"])
        checker = HealthChecker()
        await checker.start(balancers)
        try:
            return balancers["up"].select(), target_health_for_test(checker, "no-such-host.invalid:80")
        finally:
            await checker.stop()

    assert asyncio.run(scenario()) == (None, "DNS_ERROR")


def test_hostnames_are_re_resolved_after_the_ttl():
    answers = {"svc.test": ["10.0.0.1"]}
    asked = []

    async def resolver(host, port):  # stands in for a DNS server whose record changes
        asked.append(host)
        return list(answers.get(host, []))

    async def scenario():
        balancers = balancers_for_test(["svc.test:80"])
        checker = HealthChecker(dns_ttl=0.05, resolver=resolver)
        await checker.start(balancers)
        try:
            first = balancers["up"].select().host
            answers["svc.test"] = ["10.0.0.2", "10.0.0.3"]
            await wait_for_test(lambda: len(balancers["up"].peers) == 2)
            return first, {balancers["up"].select().host for _ in range(10)}
        finally:
            await checker.stop()

    first, later = asyncio.run(scenario())
    assert first == "10.0.0.1" and later == {"10.0.0.2", "10.0.0.3"} and len(asked) >= 2
