"""The stream router as pure functions: Kong's priorities, CIDRs, ports, SNIs, protocols."""
from __future__ import annotations

import pytest

from meshway.proxy.stream import ConnectionFacts, Preread, HelloStatus, choose_route, needs_preread, plan_connection
from meshway.proxy.stream._router import compile_routes

SERVICES = {"svc": object()}


def route_for_test(name, protocols=("tcp",), sources=(), destinations=(), snis=(), created_at=None):
    return {
        "id": f"id-{name}", "name": name, "protocols": list(protocols), "sources": list(sources),
        "destinations": list(destinations), "snis": list(snis), "service": {"id": "svc"}, "created_at": created_at,
    }


def router_for_test(*routes):
    return compile_routes(list(routes), SERVICES)


def facts(src="10.0.0.2", sport=40000, dst="10.0.0.5", dport=19000):
    return ConnectionFacts(src, sport, dst, dport)


def winner(router, f=None, seen=None, tls_only=False):
    plan = plan_connection(router, f or facts(), tls_only)
    if plan.route is not None or not plan.preread:
        return plan.route.name if plan.route else None
    route = choose_route(plan.candidates, seen or Preread(HelloStatus.NOT_TLS), tls_only)
    return route.name if route else None


TLS = lambda sni: Preread(HelloStatus.TLS, sni)  # noqa: E731


def test_destination_ip_and_port_must_both_match():
    router = router_for_test(route_for_test("b", destinations=[{"ip": "10.0.0.5", "port": 19000}]))
    assert winner(router) == "b"
    assert winner(router, facts(dport=19001)) is None
    assert winner(router, facts(dst="10.0.0.6")) is None


def test_any_entry_of_a_list_matches():
    router = router_for_test(route_for_test("b", destinations=[{"port": 1}, {"ip": "10.0.0.5"}]))
    assert winner(router, facts(dport=7)) == "b"
    assert winner(router, facts(dst="1.2.3.4", dport=1)) == "b"
    assert winner(router, facts(dst="1.2.3.4", dport=2)) is None


def test_cidr_sources_and_ipv6():
    router = router_for_test(
        route_for_test("v4", sources=[{"ip": "10.0.0.0/24"}]),
        route_for_test("v6", sources=[{"ip": "fd00::/64"}]),
    )
    assert winner(router, facts(src="10.0.0.200")) == "v4"
    assert winner(router, facts(src="10.0.1.1")) is None
    assert winner(router, facts(src="fd00::1", dst="fd00::5")) == "v6"


def test_more_kinds_of_fields_win():
    router = router_for_test(
        route_for_test("dst", destinations=[{"ip": "10.0.0.5"}], created_at=1),
        route_for_test("src+dst", sources=[{"ip": "10.0.0.2"}], destinations=[{"port": 19000}], created_at=2),
    )
    assert winner(router) == "src+dst"


def test_source_beats_destination_at_equal_count():
    router = router_for_test(
        route_for_test("dst", destinations=[{"port": 19000}], created_at=1),
        route_for_test("src", sources=[{"ip": "10.0.0.0/8"}], created_at=2),
    )
    assert winner(router) == "src"


def test_sni_beats_source_and_destination():
    router = router_for_test(
        route_for_test("src+dst", ("tls",), sources=[{"ip": "10.0.0.2"}], destinations=[{"port": 19000}]),
        route_for_test("sni+dst", ("tls",), destinations=[{"port": 19000}], snis=["a.test"]),
    )
    assert winner(router, seen=TLS("a.test")) == "sni+dst"
    assert winner(router, seen=TLS("b.test")) == "src+dst"


def test_ip_and_port_entry_beats_ip_only_then_older_wins():
    router = router_for_test(
        route_for_test("old-ip", destinations=[{"ip": "10.0.0.5"}], created_at=1),
        route_for_test("ip-port", destinations=[{"ip": "10.0.0.5", "port": 19000}], created_at=3),
        route_for_test("new-ip", destinations=[{"ip": "10.0.0.5"}], created_at=2),
    )
    assert [r.name for r in router.routes] == ["ip-port", "old-ip", "new-ip"]


def test_wildcard_sni_and_trailing_dot():
    router = router_for_test(
        route_for_test("exact", ("tls_passthrough",), snis=["api.example.com."]),
        route_for_test("wild", ("tls_passthrough",), snis=["*.example.com"]),
    )
    assert winner(router, seen=TLS("api.example.com")) == "exact"
    assert winner(router, seen=TLS("www.example.com")) == "wild"
    assert winner(router, seen=TLS("example.com")) is None


def test_tls_clients_prefer_tls_routes_and_fall_back_to_raw_tcp():
    router = router_for_test(
        route_for_test("tcp", ("tcp",), destinations=[{"port": 19000}]),
        route_for_test("tls", ("tls",), destinations=[{"port": 19000}], snis=["a.test"]),
    )
    assert winner(router, seen=TLS("a.test")) == "tls"
    assert winner(router, seen=TLS("other.test")) == "tcp"
    assert winner(router, seen=Preread(HelloStatus.NOT_TLS)) == "tcp"


def test_ssl_listener_takes_only_tls_routes():
    router = router_for_test(route_for_test("tcp"), route_for_test("tls", ("tls",), snis=["a.test"]))
    assert winner(router, seen=TLS("a.test"), tls_only=True) == "tls"
    assert winner(router, seen=TLS("b.test"), tls_only=True) is None
    assert winner(router, seen=Preread(HelloStatus.NOT_TLS), tls_only=True) is None
    assert winner(router, seen=Preread(HelloStatus.NOT_TLS)) == "tcp"


def test_mode_follows_what_the_client_speaks():
    router = router_for_test(route_for_test("both", ("tcp", "tls")), route_for_test("pt", ("tls_passthrough",), snis=["p.test"]))
    both = next(r for r in router.routes if r.name == "both")
    passthrough = next(r for r in router.routes if r.name == "pt")
    assert both.mode_for(True) == "terminate" and both.mode_for(False) == "raw"
    assert passthrough.mode_for(True) == "passthrough"


# ---- when to wait for the client's first bytes --------------------------------------------


def test_tcp_only_destination_connects_at_once():
    router = router_for_test(
        route_for_test("b", destinations=[{"ip": "10.0.0.5", "port": 19000}]),
        route_for_test("other", ("tls",), destinations=[{"ip": "10.0.0.5", "port": 19443}], snis=["x.test"]),
    )
    plan = plan_connection(router, facts())
    assert (plan.preread, plan.route.name) == (False, "b")
    assert plan_connection(router, facts(dport=19443)).preread is True


def test_preread_needed_for_sni_or_for_a_tls_tcp_mix():
    tcp = router_for_test(route_for_test("t")).routes
    tls_plain = router_for_test(route_for_test("s", ("tls",))).routes
    sni = router_for_test(route_for_test("n", ("tls_passthrough",), snis=["a.test"])).routes
    assert needs_preread(tcp) is False
    assert needs_preread(tls_plain) is False
    assert needs_preread(sni) is True
    assert needs_preread(tcp + tls_plain) is True


def test_no_candidate_means_no_route_without_waiting():
    plan = plan_connection(router_for_test(route_for_test("b", destinations=[{"port": 1}])), facts())
    assert (plan.route, plan.preread) == (None, False)


@pytest.mark.parametrize("bad", [
    {"destinations": [{"ip": "10.0.0.300"}]},
    {"sources": [{"port": 70000}]},
    {"snis": ["bad\x00name"]},
    {"service": {"id": "missing"}},
])
def test_uncompilable_routes_raise_value_error_naming_the_route(bad):
    entity = {**route_for_test("broken", ("tls",)), **bad}
    with pytest.raises(ValueError, match="broken"):
        router_for_test(entity)


def test_http_routes_are_not_stream_routes():
    router = router_for_test(route_for_test("web", ("http", "https")), route_for_test("udp", ("udp",)))
    assert router.routes == ()
