"""Passive checks from real traffic, manual health, the upstream threshold and the health API."""
from __future__ import annotations

from balancer_for_test import (balancer_for_test, passive_for_test, picks_for_test,
                               snapshot_for_test, upstream_for_test)

from meshway.proxy.balancer import HealthChecker, carry_over, compile_balancers

TWO = ["10.0.0.1:80", "10.0.0.2:80"]


def two_for_test(**unhealthy):
    b = balancer_for_test(TWO, healthchecks=passive_for_test(**unhealthy))
    return b, {p.host: p for p in b.peers}["10.0.0.1"]


def test_statuses_cross_the_threshold_then_the_target_is_not_selected():
    b, bad = two_for_test(http_failures=3)
    b.report(bad, status=500)
    b.report(bad, status=503)
    assert "10.0.0.1:80" in picks_for_test(b, 4)
    b.report(bad, status=500)
    assert set(picks_for_test(b, 20)) == {"10.0.0.2:80"}


def test_manual_healthy_brings_it_back():
    b, bad = two_for_test(http_failures=1)
    b.report(bad, status=500)
    assert set(picks_for_test(b, 10)) == {"10.0.0.2:80"}
    assert b.set_health("10.0.0.1:80", True)
    assert set(picks_for_test(b, 10)) == set(TWO)


def test_passive_successes_alone_never_bring_it_back_by_default():
    b, bad = two_for_test(http_failures=1)
    b.report(bad, status=500)
    for _ in range(50):
        b.report(bad, status=200)
    assert set(picks_for_test(b, 10)) == {"10.0.0.2:80"}


def test_passive_successes_bring_it_back_when_configured():
    tree = {"passive": {"unhealthy": {"tcp_failures": 1}, "healthy": {"successes": 2}}}
    b = balancer_for_test(TWO, healthchecks=tree)
    bad = {p.host: p for p in b.peers}["10.0.0.1"]
    b.report(bad, tcp_failure=True)
    b.report(bad, status=200)
    assert set(picks_for_test(b, 10)) == {"10.0.0.2:80"}
    b.report(bad, status=200)
    assert set(picks_for_test(b, 10)) == set(TWO)


def test_timeouts_and_tcp_failures_have_their_own_thresholds():
    b, bad = two_for_test(timeouts=2, tcp_failures=3)
    b.report(bad, timeout=True)
    b.report(bad, tcp_failure=True)
    b.report(bad, tcp_failure=True)
    assert "10.0.0.1:80" in picks_for_test(b, 4)
    b.report(bad, timeout=True)
    assert set(picks_for_test(b, 10)) == {"10.0.0.2:80"}


def test_a_success_in_between_resets_the_failure_count():
    b, bad = two_for_test(http_failures=2)
    for _ in range(5):
        b.report(bad, status=500)
        b.report(bad, status=200)
    assert "10.0.0.1:80" in picks_for_test(b, 4)


def test_statuses_outside_both_lists_and_disabled_passive_are_ignored():
    b, bad = two_for_test(http_failures=1)
    b.report(bad, status=404)  # not in passive unhealthy statuses [429, 500, 503]
    assert "10.0.0.1:80" in picks_for_test(b, 4)
    off = balancer_for_test(TWO)
    for peer in off.peers:
        for _ in range(10):
            off.report(peer, status=500, tcp_failure=True)
    assert set(picks_for_test(off, 4)) == set(TWO)


def test_no_healthy_target_gives_no_peer():
    b = balancer_for_test(TWO)
    b.set_health("10.0.0.1:80", False)
    b.set_health("10.0.0.2:80", False)
    assert b.select() is None
    assert not b.set_health("10.9.9.9:80", True)


def test_threshold_makes_the_whole_upstream_unavailable():
    b = balancer_for_test(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"],
                          healthchecks={"threshold": 50})
    b.set_health("10.0.0.1:80", False)
    assert b.select() is not None and b.healthy
    b.set_health("10.0.0.2:80", False)
    assert b.select() is None and not b.healthy


def checker_for_test(balancers):
    checker = HealthChecker(node_id="node-1")
    checker._balancers = balancers  # no loop needed to read health
    return checker


def test_health_document_has_kongs_shape():
    b = balancer_for_test([("10.0.0.1:80", 100), ("10.0.0.2:80", 0), "h.internal:80"],
                          healthchecks=passive_for_test(http_failures=1))
    b.set_health("10.0.0.1:80", False)
    doc = checker_for_test({"up": b}).health("up")
    assert doc["node_id"] == "node-1" and doc["next"] is None
    first, disabled, unresolved = doc["data"]
    assert first["target"] == "10.0.0.1:80" and first["weight"] == 100
    assert first["health"] == "UNHEALTHY" and first["upstream"] == {"id": "id-up"}
    assert first["data"] == {"addresses": [
        {"ip": "10.0.0.1", "port": 80, "health": "UNHEALTHY", "weight": 100}]}
    assert disabled["health"] == "HEALTHCHECKS_OFF"
    assert unresolved["health"] == "DNS_ERROR" and unresolved["data"] == {"addresses": []}


def test_health_is_off_without_checks_and_balancer_health_summarises():
    b = balancer_for_test(TWO)
    checker = checker_for_test({"up": b})
    assert {t["health"] for t in checker.health("up")["data"]} == {"HEALTHCHECKS_OFF"}
    assert checker.balancer_health("up")["data"]["health"] == "HEALTHCHECKS_OFF"
    assert checker.health("nope") is None and not checker.set_health("nope", "x", True)
    checked = balancer_for_test(TWO, healthchecks=passive_for_test(timeouts=1))
    checker = checker_for_test({"up": checked})
    assert checker.set_health("up", "10.0.0.1:80", False)
    data = checker.balancer_health("up")["data"]
    assert data["health"] == "HEALTHY" and data["details"]["weight"] == {
        "total": 200, "available": 100, "unavailable": 100}


def test_hostname_addresses_show_their_share_of_the_weight():
    b = balancer_for_test(["h.internal:80"], healthchecks=passive_for_test(timeouts=1))
    b.set_target_ips(b.target("h.internal:80"), ["10.1.0.1", "10.1.0.2", "10.1.0.3"], now=1.0)
    entry = checker_for_test({"up": b}).health("up")["data"][0]
    assert entry["health"] == "HEALTHY" and entry["weight"] == 100
    assert [a["weight"] for a in entry["data"]["addresses"]] == [33.333] * 3


def test_set_health_of_one_address_of_a_target():
    b = balancer_for_test(["h.internal:80"])
    b.set_target_ips(b.target("h.internal:80"), ["10.1.0.1", "10.1.0.2"], now=1.0)
    assert b.set_health("h.internal:80", False, address="10.1.0.1:80")
    assert {b.select().host for _ in range(10)} == {"10.1.0.2"}
    assert not b.set_health("h.internal:80", False, address="10.1.0.9:80")


def test_carry_over_keeps_health_and_dns_of_targets_that_still_exist():
    upstream = upstream_for_test(healthchecks=passive_for_test(http_failures=1))
    old = compile_balancers(snapshot_for_test(upstream, TWO + ["h.internal:80"]))
    old["up"].set_health("10.0.0.1:80", False)
    old["up"].set_target_ips(old["up"].target("h.internal:80"), ["10.1.0.1"], now=1.0)
    new = compile_balancers(snapshot_for_test(upstream, TWO + ["h.internal:80", "10.0.0.3:80"]))
    carry_over(new, old)
    picks = set(picks_for_test(new["up"], 30))
    assert picks == {"10.0.0.2:80", "h.internal:80", "10.0.0.3:80"}
