"""Weighted round-robin: exact shares, weight 0, exclude, hostname targets sharing a weight."""
from __future__ import annotations

from collections import Counter

from balancer_for_test import balancer_for_test, picks_for_test

from meshway.proxy.balancer import Peer


def test_distribution_over_whole_cycles_matches_weights_exactly():
    b = balancer_for_test([("10.0.0.1:80", 100), ("10.0.0.2:80", 50), ("10.0.0.3:80", 25)])
    counts = Counter(picks_for_test(b, 7 * 40))  # the wheel has 4 + 2 + 1 slots
    assert counts == {"10.0.0.1:80": 160, "10.0.0.2:80": 80, "10.0.0.3:80": 40}


def test_picks_are_interleaved_not_in_runs():
    b = balancer_for_test(["10.0.0.1:80", "10.0.0.2:80"])
    picks = picks_for_test(b, 10)
    assert all(a != c for a, c in zip(picks, picks[1:]))


def test_weight_zero_is_never_selected():
    b = balancer_for_test([("10.0.0.1:80", 0), ("10.0.0.2:80", 10)])
    assert set(picks_for_test(b, 50)) == {"10.0.0.2:80"}


def test_only_weight_zero_targets_gives_no_peer():
    b = balancer_for_test([("10.0.0.1:80", 0)])
    assert b.select() is None


def test_no_targets_gives_no_peer():
    assert balancer_for_test([]).select() is None


def test_peer_carries_ip_port_target_and_hostname_and_is_hashable():
    peer = balancer_for_test(["10.0.0.1:8080"]).select()
    assert peer == Peer(host="10.0.0.1", port=8080, target="10.0.0.1:8080", hostname="10.0.0.1")
    assert {peer: 1}[Peer("10.0.0.1", 8080, "10.0.0.1:8080", "10.0.0.1")] == 1


def test_exclude_skips_peers_already_tried():
    b = balancer_for_test(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"])
    first = b.select()
    second = b.select(exclude=frozenset({first}))
    third = b.select(exclude=frozenset({first, second}))
    assert len({first, second, third}) == 3
    assert b.select(exclude=frozenset({first, second, third})) is None


def test_exclude_with_a_dominant_weight_still_finds_the_small_one():
    b = balancer_for_test([("10.0.0.1:80", 1000), ("10.0.0.2:80", 1)])
    big = next(p for p in iter(b.select, None) if p.target == "10.0.0.1:80")
    for _ in range(20):
        assert b.select(exclude=frozenset({big})).target == "10.0.0.2:80"


def test_target_without_port_defaults_to_8000_and_ipv6_literals_parse():
    b = balancer_for_test(["10.0.0.1", "[::1]:9000"])
    assert {(p.host, p.port) for p in map(lambda _: b.select(), range(2))} == {
        ("10.0.0.1", 8000), ("::1", 9000)}


def test_hostname_resolving_to_several_ips_shares_its_weight():
    b = balancer_for_test([("api.internal:80", 100), ("10.0.0.9:80", 100)])
    assert b.select() is not None  # the ip target serves while the hostname is unresolved
    b.set_target_ips(b.target("api.internal:80"), ["10.1.0.1", "10.1.0.2"], now=1.0)
    counts = Counter((p.host, p.hostname) for p in map(lambda _: b.select(), range(400)))
    assert counts == {("10.0.0.9", "10.0.0.9"): 200, ("10.1.0.1", "api.internal"): 100,
                      ("10.1.0.2", "api.internal"): 100}


def test_dns_failure_keeps_the_last_answer():
    b = balancer_for_test(["api.internal:80"])
    target = b.target("api.internal:80")
    b.set_target_ips(target, ["10.1.0.1"], now=1.0)
    b.set_target_ips(target, [], now=2.0)
    assert b.select().host == "10.1.0.1"


def test_a_round_robin_with_one_available_address_names_it_for_the_proxy():
    # `only`: the peer the proxy takes without a select call; it follows health changes
    b = balancer_for_test(["10.0.0.1:80", "10.0.0.2:80"])
    assert b.only is None  # two to alternate between
    b.set_health("10.0.0.1:80", False)
    assert b.only is not None and b.only.target == "10.0.0.2:80" and b.select() == b.only
    b.set_health("10.0.0.2:80", False)
    assert b.only is None and b.select() is None  # nothing healthy: the proxy's select answers None
    b.set_health("10.0.0.1:80", True)
    b.set_health("10.0.0.2:80", True)
    assert b.only is None
    assert balancer_for_test(["10.0.0.3:80"]).only.target == "10.0.0.3:80"
    assert balancer_for_test(["10.0.0.3:80"], algorithm="least-connections").only is None
