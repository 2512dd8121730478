"""Least-connections and latency (EWMA) selection."""
from __future__ import annotations

from collections import Counter

from balancer_for_test import balancer_for_test

THREE = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]


def test_least_connections_picks_the_least_loaded():
    b = balancer_for_test(THREE, algorithm="least-connections")
    held = [b.select() for _ in range(3)]
    for peer in held:
        b.on_connect(peer)
    assert len(set(held)) == 3  # each new connection went to an idle peer
    b.on_connect(held[0])
    b.on_connect(held[1])
    assert b.select() == held[2]
    b.on_release(held[0])
    b.on_release(held[0])
    assert b.select() == held[0]


def test_least_connections_counts_against_weight():
    b = balancer_for_test([("10.0.0.1:80", 300), ("10.0.0.2:80", 100)], algorithm="least-connections")
    for _ in range(8):
        b.on_connect(b.select())  # connections that stay open
    assert {p.target: b.connections(p) for p in b.peers} == {"10.0.0.1:80": 6, "10.0.0.2:80": 2}


def test_least_connections_spreads_short_requests_evenly():
    b = balancer_for_test(THREE, algorithm="least-connections")
    seen = Counter()
    for _ in range(300):
        peer = b.select()
        b.on_connect(peer)
        b.on_release(peer)
        seen[peer.target] += 1
    assert set(seen.values()) == {100}


def test_least_connections_exclude_and_unknown_peers():
    b = balancer_for_test(THREE, algorithm="least-connections")
    first = b.select()
    assert b.select(exclude=frozenset({first})) != first
    b.on_release(first)  # a release without connect must not go negative
    assert b.connections(first) == 0


def test_least_connections_skips_unhealthy():
    b = balancer_for_test(THREE, algorithm="least-connections")
    b.set_health("10.0.0.1:80", False)
    assert {b.select().target for _ in range(30)} == {"10.0.0.2:80", "10.0.0.3:80"}


def test_latency_prefers_the_faster_peer():
    b = balancer_for_test(THREE[:2], algorithm="latency")
    fast, slow = sorted(b.peers, key=lambda p: p.host)
    for _ in range(5):
        b.report(fast, latency_ms=5.0)
        b.report(slow, latency_ms=80.0)
    assert Counter(b.select().target for _ in range(50)) == {"10.0.0.1:80": 50}
    assert b.select(exclude=frozenset({fast})) == slow


def test_latency_with_many_peers_sends_most_to_the_fastest():
    targets = [f"10.0.0.{i}:80" for i in range(1, 6)]
    b = balancer_for_test(targets, algorithm="latency")
    for peer in b.peers:
        b.report(peer, latency_ms=5.0 if peer.host == "10.0.0.1" else 100.0)
    counts = Counter(b.select().host for _ in range(1000))
    assert counts["10.0.0.1"] > 300 and counts.most_common(1)[0][0] == "10.0.0.1"


def test_latency_new_peer_starts_at_the_average_not_at_zero():
    b = balancer_for_test(["10.0.0.1:80", "h.internal:80"], algorithm="latency")
    known = b.select()
    b.report(known, latency_ms=50.0)
    b.set_target_ips(b.target("h.internal:80"), ["10.1.0.1"], now=1.0)
    new = next(a for a in b.addresses if a.peer.host == "10.1.0.1")
    assert new.ewma == 50.0
