"""Choosing hops for a service: fixed host, the shared balancer, retries, origins."""
from __future__ import annotations

from meshway.proxy.balancer import compile_balancers
from meshway.proxy.stream._targets import ServiceTargets, parse_origins


def balancer_for_test(*targets: str):
    snapshot = {"upstreams": [{"id": "u", "name": "pool", "algorithm": "round-robin"}],
                "targets": [{"id": t, "target": t, "weight": 100, "upstream": {"id": "u"}} for t in targets]}
    return compile_balancers(snapshot)["pool"]


def test_a_fixed_host_is_tried_once():
    targets = ServiceTargets("tcp", "10.0.0.5", 19000, None, {})
    hop = targets.pick("10.0.0.2", frozenset())
    assert (hop.host, hop.port, hop.tls) == ("10.0.0.5", 19000, False)
    assert targets.pick("10.0.0.2", frozenset({hop.peer})) is None


def test_balancer_hops_never_repeat_within_one_connection():
    targets = ServiceTargets("tls", "pool", 8000, balancer_for_test("10.0.0.1:1", "10.0.0.2:2"), {})
    first = targets.pick("10.0.0.9", frozenset())
    second = targets.pick("10.0.0.9", frozenset({first.peer}))
    assert {str(first), str(second)} == {"10.0.0.1:1", "10.0.0.2:2"}
    assert first.tls and second.tls
    assert targets.pick("10.0.0.9", frozenset({first.peer, second.peer})) is None


def test_connect_failures_feed_passive_health():
    balancer = compile_balancers({
        "upstreams": [{"id": "u", "name": "pool", "healthchecks": {"passive": {"unhealthy": {"tcp_failures": 1}}}}],
        "targets": [{"id": "t", "target": "10.0.0.1:1", "weight": 100, "upstream": {"id": "u"}}],
    })["pool"]
    targets = ServiceTargets("tcp", "pool", 8000, balancer, {})
    targets.failed(targets.pick("c", frozenset()), timeout=False)
    assert targets.pick("c", frozenset()) is None


def test_origins_rewrite_address_and_protocol():
    origins = parse_origins([("tcp://127.0.0.5:19000", "tls://127.0.0.6:19443")])
    hop = ServiceTargets("tcp", "127.0.0.5", 19000, None, origins).pick("c", frozenset())
    assert (hop.host, hop.port, hop.tls) == ("127.0.0.6", 19443, True)
