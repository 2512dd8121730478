"""Active health checks against real HTTP, HTTPS and TCP servers on 127.0.0.1."""
from __future__ import annotations

import asyncio

from balancer_servers_for_test import (HttpServer_for_test, TcpServer_for_test, active_for_test,
                                       balancers_for_test, free_port_for_test,
                                       self_signed_for_test, target_health_for_test,
                                       wait_for_test)

from meshway.proxy.balancer import HealthChecker


def test_http_server_turning_500_goes_unhealthy_after_n_and_back_after_m():
    async def scenario():
        good, flaky = await HttpServer_for_test().start(), await HttpServer_for_test().start()
        bad_target = f"127.0.0.1:{flaky.port}"
        tree = active_for_test(http_failures=3, successes=2, http_path="/status",
                               headers={"x-probe": ["yes"]})
        balancers = balancers_for_test([f"127.0.0.1:{good.port}", bad_target], tree)
        checker = HealthChecker(node_id="n1")
        await checker.start(balancers)
        try:
            await wait_for_test(lambda: len(flaky.requests) >= 2)
            assert target_health_for_test(checker, bad_target) == "HEALTHY"
            flaky.status = 500
            await wait_for_test(lambda: target_health_for_test(checker, bad_target) == "UNHEALTHY")
            failures_seen = flaky.answered.count(500)
            picks = {balancers["up"].select().port for _ in range(10)}
            flaky.status = 200
            await wait_for_test(lambda: target_health_for_test(checker, bad_target) == "HEALTHY")
            answered = flaky.answered
            last_500 = max(i for i, status in enumerate(answered) if status == 500)
            return picks, failures_seen, len(answered) - last_500 - 1, flaky.requests[0]
        finally:
            await checker.stop()
            await good.close()
            await flaky.close()

    picks, failures_seen, successes_seen, request = asyncio.run(scenario())
    assert failures_seen >= 3  # not before the third 500
    assert len(picks) == 1  # only the good server while the flaky one answered 500
    assert successes_seen >= 2  # not before the second 200
    assert request.startswith(b"GET /status HTTP/1.0\r\n")
    assert b"\r\nx-probe: yes\r\n" in request and b"\r\nHost: 127.0.0.1:" in request


def test_https_checks_honour_certificate_verification(tmp_path):
    async def scenario():
        tls, cert_path = self_signed_for_test(tmp_path)
        server = await HttpServer_for_test(tls=tls).start()
        target = f"127.0.0.1:{server.port}"
        results = {}
        for verify, cafile in [(False, None), (True, None), (True, str(cert_path))]:
            tree = active_for_test("https", https_verify_certificate=verify, tcp_failures=1)
            checker = HealthChecker(cafile=cafile)
            balancers = balancers_for_test([target], tree)
            balancers["up"].set_health(target, verify and cafile is None)  # start opposite
            await checker.start(balancers)
            expected = "UNHEALTHY" if verify and cafile is None else "HEALTHY"
            try:
                await wait_for_test(lambda: target_health_for_test(checker, target) == expected)
                results[(verify, cafile is not None)] = expected
            finally:
                await checker.stop()
        await server.close()
        return results, len(server.requests)

    results, served = asyncio.run(scenario())
    assert results == {(False, False): "HEALTHY", (True, False): "UNHEALTHY",
                       (True, True): "HEALTHY"}
    assert served >= 2  # requests were really made over TLS when the handshake succeeded


def test_tcp_check_fails_on_a_closed_port_and_recovers_when_it_listens():
    async def scenario():
        port = free_port_for_test()
        target = f"127.0.0.1:{port}"
        checker = HealthChecker()
        balancers = balancers_for_test([target], active_for_test("tcp", tcp_failures=2))
        await checker.start(balancers)
        try:
            await wait_for_test(lambda: target_health_for_test(checker, target) == "UNHEALTHY")
            none_while_down = balancers["up"].select()
            server = await TcpServer_for_test(port).start()
            await wait_for_test(lambda: target_health_for_test(checker, target) == "HEALTHY")
            await server.close()
            return none_while_down, balancers["up"].select(), server.accepted
        finally:
            await checker.stop()

    none_while_down, peer, accepted = asyncio.run(scenario())
    assert none_while_down is None
    assert peer is not None and accepted >= 2


def test_a_server_that_never_answers_fails_on_timeouts():
    async def scenario():
        server = await HttpServer_for_test(silent=True).start()
        target = f"127.0.0.1:{server.port}"
        checker = HealthChecker()
        balancers = balancers_for_test([target], active_for_test(timeouts=2, timeout=0.1))
        await checker.start(balancers)
        try:
            await wait_for_test(lambda: target_health_for_test(checker, target) == "UNHEALTHY")
        finally:
            await checker.stop()
            await server.close()
        return len(server.requests)

    assert asyncio.run(scenario()) >= 2


def test_probes_respect_concurrency():
    async def scenario():
        servers = [await HttpServer_for_test(delay=0.05).start() for _ in range(6)]
        targets = [f"127.0.0.1:{s.port}" for s in servers]
        balancers = balancers_for_test(targets, active_for_test(concurrency=2, interval=0.01))
        checker = HealthChecker()
        await checker.start(balancers)
        peak = 0
        try:
            for _ in range(30):
                peak = max(peak, sum(s.active for s in servers))
                await asyncio.sleep(0.01)
            await wait_for_test(lambda: all(s.requests for s in servers))
        finally:
            await checker.stop()
            for s in servers:
                await s.close()
        return peak

    assert 1 <= asyncio.run(scenario()) <= 2


def test_new_config_carries_health_over_and_checks_keep_running():
    async def scenario():
        port = free_port_for_test()
        down = f"127.0.0.1:{port}"
        server = await HttpServer_for_test().start()
        up = f"127.0.0.1:{server.port}"
        tree = active_for_test("tcp", tcp_failures=1)
        checker = HealthChecker()
        await checker.start(balancers_for_test([down, up], tree))
        try:
            await wait_for_test(lambda: target_health_for_test(checker, down) == "UNHEALTHY")
            new = balancers_for_test([down, up], tree)
            await checker.update(new)
            right_after = target_health_for_test(checker, down)
            picks = {new["up"].select().target for _ in range(10)}
            revived = await TcpServer_for_test(port).start()
            await wait_for_test(lambda: target_health_for_test(checker, down) == "HEALTHY")
            await revived.close()
            return right_after, picks, up
        finally:
            await checker.stop()
            await server.close()

    right_after, picks, up = asyncio.run(scenario())
    assert right_after == "UNHEALTHY"  # the new config did not start from "all healthy"
    assert picks == {up}
