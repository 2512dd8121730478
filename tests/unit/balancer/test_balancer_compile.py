"""compile_balancers: the snapshot's upstreams and targets become balancers, fast and without I/O."""
from __future__ import annotations


from balancer_for_test import RequestForTest, balancer_for_test, passive_for_test, snapshot_for_test, upstream_for_test

from meshway.proxy.balancer import compile_balancers


def test_one_balancer_per_upstream_name_with_its_own_targets():
    a, b = upstream_for_test("a.svc"), upstream_for_test("b.svc")
    snap_a, snap_b = snapshot_for_test(a, ["10.0.0.1:80"]), snapshot_for_test(b, ["10.0.0.2:81"])
    for t in snap_b["targets"]:
        t["id"] = "other-" + t["id"]
    snapshot = {"upstreams": [a, b], "targets": snap_a["targets"] + snap_b["targets"],
                "services": [{"host": "b.svc"}]}
    balancers = compile_balancers(snapshot)
    assert set(balancers) == {"a.svc", "b.svc"}
    service = snapshot["services"][0]
    assert balancers[service["host"]].select().port == 81


def test_duplicate_target_strings_keep_the_last_entity():
    snapshot = snapshot_for_test(upstream_for_test(), [("10.0.0.1:80", 5), ("10.0.0.1:80", 0)])
    assert compile_balancers(snapshot)["up"].select() is None


def test_empty_snapshot_gives_no_balancers():
    assert compile_balancers({"upstreams": [], "targets": []}) == {}


def test_ten_thousand_targets_compile_and_select():
    # Speed is measured in bench/ (never as a timed assertion here): this checks that every
    # algorithm takes 10,000 weighted targets and picks among them.
    targets = [(f"10.{i // 250}.{i % 250}.1:80", 100 + i % 7) for i in range(10_000)]
    names = {name for name, _ in targets}
    for algorithm, fields in [("round-robin", {}), ("least-connections", {}), ("latency", {}),
                              ("consistent-hashing", {"hash_on": "ip"})]:
        snapshot = snapshot_for_test(upstream_for_test(algorithm=algorithm, **fields), targets)
        balancer = compile_balancers(snapshot)["up"]
        assert len(balancer.peers) == 10_000, algorithm
        request = RequestForTest(client_ip="192.0.2.7")
        picked = {balancer.select(request).target for _ in range(2000)}
        assert picked <= names, algorithm
        if algorithm == "consistent-hashing":
            assert len(picked) == 1, "one client IP, one target"
        elif algorithm == "round-robin":
            assert len(picked) > 1000, "round-robin spreads over the targets"


def test_a_real_declarative_snapshot_compiles():
    from meshway.model import parse_declarative
    snapshot = parse_declarative({"_format_version": "3.0", "upstreams": [{
        "name": "api.up", "algorithm": "consistent-hashing", "hash_on": "header",
        "hash_on_header": "x-user", "healthchecks": {"passive": {"unhealthy": {"http_failures": 1}}},
        "targets": [{"target": "127.0.0.1:9001"}, {"target": "127.0.0.2:9001"},
                    {"target": "localhost:9002", "weight": 50}]}]})
    balancer = compile_balancers(snapshot)["api.up"]
    assert balancer.needs_request and balancer.health_config.passive_on
    assert {p.target for p in balancer.peers} == {"127.0.0.1:9001", "127.0.0.2:9001"}
    request = RequestForTest(headers={"x-user": "ann"})
    peer = balancer.select(request)
    balancer.report(peer, status=500)
    assert balancer.select(request) not in (None, peer)


def test_only_balancers_with_per_request_state_are_tracked():
    assert not balancer_for_test(["10.0.0.1:80"]).tracked  # round-robin: nothing to count per request
    assert balancer_for_test(["10.0.0.1:80"], algorithm="least-connections").tracked
    assert balancer_for_test(["10.0.0.1:80"], algorithm="latency").tracked
    assert balancer_for_test(["10.0.0.1:80"], healthchecks=passive_for_test(http_failures=1)).tracked
