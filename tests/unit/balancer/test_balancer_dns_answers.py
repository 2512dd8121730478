"""DNS answers as the balancer takes them: SRV ports and weights, TTLs, LAST, settings."""
from __future__ import annotations

import socket
from collections import Counter

import pytest
from balancer_for_test import balancer_for_test, snapshot_for_test, upstream_for_test

from meshway.proxy.balancer import DnsAnswer, DnsResolver, Endpoint, compile_balancers
from meshway.proxy.balancer._dns import answer_ttl, as_answer, srv_endpoints
from meshway.proxy.balancer._dnsresolver import HostsFile, nameservers
from meshway.settings import SettingsError, load_settings

SRV = DnsAnswer((Endpoint("10.0.0.1", 7001, 30), Endpoint("10.0.0.2", 7002, 10)), ttl=5.0)


def _srv_balancer(weight: int = 100, answer: DnsAnswer = SRV):
    b = balancer_for_test([("svc.consul", weight)])
    b.set_target_answer(b.target("svc.consul"), answer, now=1.0)
    return b


def test_only_the_lowest_priority_is_used_and_weight_0_becomes_1():
    ips = {"a": ["10.0.0.1"], "b": ["10.0.0.2", "10.0.0.3"], "c": ["10.0.0.9"]}.get
    got = srv_endpoints([(2, 9, 7009, "c"), (1, 0, 7001, "a"), (1, 4, 0, "b")], ips)
    assert got == (Endpoint("10.0.0.1", 7001, 1), Endpoint("10.0.0.2", None, 4),
                   Endpoint("10.0.0.3", None, 4))


def test_ttl_is_the_smallest_record_ttl_at_least_one_second_and_none_for_zero():
    assert answer_ttl([30, 7]) == 7.0 and answer_ttl([0]) is None and answer_ttl([]) is None
    assert DnsAnswer((), answer_ttl([1])).ttl == 1.0
    assert as_answer(["10.0.0.2", "10.0.0.1", "10.0.0.2"]) == DnsAnswer(
        (Endpoint("10.0.0.1"), Endpoint("10.0.0.2")))


def test_srv_endpoints_bring_their_port_and_weight_to_the_ring():
    b = _srv_balancer()
    picks = Counter((p.host, p.port) for p in (b.select() for _ in range(400)))
    assert picks == {("10.0.0.1", 7001): 300, ("10.0.0.2", 7002): 100}
    assert b.target("svc.consul").ttl == 5.0


def test_srv_port_0_means_the_targets_port():
    b = _srv_balancer(answer=DnsAnswer((Endpoint("10.0.0.1", None, 2),)))
    assert [(p.host, p.port) for p in b.peers] == [("10.0.0.1", 8000)]


def test_a_target_of_weight_0_stays_disabled_whatever_srv_says():
    b = _srv_balancer(weight=0)
    assert b.peers == [] and b.select() is None


def test_a_changed_weight_or_port_updates_peers_and_keeps_known_state():
    b = _srv_balancer()
    kept = b.target("svc.consul").addresses[0]
    kept.healthy = False
    new = DnsAnswer((Endpoint("10.0.0.1", 7001, 30), Endpoint("10.0.0.2", 7005, 10)), ttl=1.0)
    b.set_target_answer(b.target("svc.consul"), new, now=2.0)
    assert b.target("svc.consul").addresses[0] is kept
    assert [(p.host, p.port) for p in b.peers] == [("10.0.0.1", 7001), ("10.0.0.2", 7005)]
    assert {b.select() for _ in range(8)} == {b.peers[1]}  # the unhealthy one is skipped


def test_an_empty_answer_keeps_the_last_good_one():
    b = _srv_balancer()
    b.set_target_answer(b.target("svc.consul"), DnsAnswer(()), now=2.0)
    assert len(b.peers) == 2 and b.target("svc.consul").ttl == 5.0


def test_a_new_config_carries_the_srv_answer_over():
    old = _srv_balancer()
    upstream = upstream_for_test()
    new = compile_balancers(snapshot_for_test(upstream, [("svc.consul", 50)]))["up"]
    new.adopt(old)
    assert [(p.host, p.port) for p in new.peers] == [("10.0.0.1", 7001), ("10.0.0.2", 7002)]
    assert new.target("svc.consul").ttl == 5.0


def test_last_is_the_type_that_last_worked_and_is_dropped_before_that():
    resolver = DnsResolver([("127.0.0.1", 53)], ["LAST", "SRV", "A", "CNAME"])
    assert resolver.types("x.consul") == ["SRV", "A", "CNAME"]
    resolver._last["x.consul"] = "A"
    assert resolver.types("x.consul") == ["A", "SRV", "CNAME"]


def test_hosts_and_resolv_conf_files(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost box # comment\n::1 localhost\n# 10.0.0.1 gone\n")
    v4 = frozenset({socket.AF_INET})
    assert HostsFile(str(hosts)).lookup("BOX", v4) == ["127.0.0.1"]
    assert HostsFile(str(hosts)).lookup("localhost", v4 | {socket.AF_INET6}) == ["127.0.0.1", "::1"]
    assert HostsFile(str(hosts)).lookup("gone", v4) == []
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\n")
    assert nameservers(str(conf)) == [("10.0.0.53", 53), ("fe80::1", 53)]
    assert nameservers(str(tmp_path / "missing")) == []


def test_dns_settings_parse_kong_values():
    s = load_settings(env={"MESHWAY_DNS_RESOLVER": "127.0.0.1:5353, 10.0.0.2, [::1]:54",
                           "MESHWAY_DNS_ORDER": "srv,a,aaaa"})
    assert s.dns_resolver == (("127.0.0.1", 5353), ("10.0.0.2", 53), ("::1", 54))
    assert s.dns_order == ("SRV", "A", "AAAA")
    assert load_settings(env={}).dns_order == ("LAST", "SRV", "A", "CNAME")
    assert load_settings(env={}).dns_resolver == ()


@pytest.mark.parametrize("key, value", [("DNS_RESOLVER", "dns.example:53"),
                                        ("DNS_RESOLVER", "127.0.0.1:0"),
                                        ("DNS_ORDER", "SRV,MX"), ("DNS_ORDER", " , ")])
def test_malformed_dns_settings_stop_start_up_naming_the_key(key, value):
    with pytest.raises(SettingsError, match=key.lower()):
        load_settings(env={f"MESHWAY_{key}": value})
