"""Consistent hashing: a stable ring, every hash_on source, fallbacks and the hash cookie."""
from __future__ import annotations

from collections import Counter

import pytest
from balancer_for_test import RequestForTest, balancer_for_test

from meshway.proxy.balancer import SET_COOKIE

FOUR = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]


def hashing_for_test(targets=FOUR, **fields):
    fields.setdefault("hash_on", "header")
    fields.setdefault("hash_on_header", "x-key")
    return balancer_for_test(targets, algorithm="consistent-hashing", **fields)


def owners_for_test(balancer, keys):
    return {k: balancer.select(RequestForTest(headers={"x-key": k})).target for k in keys}


def test_same_key_maps_to_same_target_every_time_and_in_a_fresh_compile():
    keys = [f"user-{i}" for i in range(200)]
    first = owners_for_test(hashing_for_test(), keys)
    assert owners_for_test(hashing_for_test(), keys) == first
    assert owners_for_test(hashing_for_test(list(reversed(FOUR))), keys) == first
    assert len(set(first.values())) == 4


def test_adding_a_fifth_target_moves_about_a_fifth_of_keys_and_only_to_it():
    keys = [f"k{i}" for i in range(10_000)]
    before = owners_for_test(hashing_for_test(), keys)
    after = owners_for_test(hashing_for_test(FOUR + ["10.0.0.5:80"]), keys)
    moved = [k for k in keys if before[k] != after[k]]
    assert {after[k] for k in moved} == {"10.0.0.5:80"}
    assert 1400 < len(moved) < 2600


def test_keys_spread_by_weight():
    b = hashing_for_test([("10.0.0.1:80", 300), ("10.0.0.2:80", 100)])
    counts = Counter(owners_for_test(b, [f"k{i}" for i in range(4000)]).values())
    assert 0.65 < counts["10.0.0.1:80"] / 4000 < 0.85


def test_unhealthy_owner_sends_its_keys_to_the_next_and_they_come_back():
    b = hashing_for_test()
    keys = [f"k{i}" for i in range(300)]
    before = owners_for_test(b, keys)
    b.set_health("10.0.0.1:80", False)
    during = owners_for_test(b, keys)
    assert "10.0.0.1:80" not in during.values()
    assert all(during[k] == before[k] for k in keys if before[k] != "10.0.0.1:80")
    b.set_health("10.0.0.1:80", True)
    assert owners_for_test(b, keys) == before


def test_exclude_moves_a_retry_to_another_target():
    b = hashing_for_test()
    request = RequestForTest(headers={"x-key": "abc"})
    first = b.select(request)
    assert b.select(request, exclude=frozenset({first})) not in (None, first)


def spread_for_test(balancer, requests):
    return {balancer.select(r).target for r in requests}


@pytest.mark.parametrize("fields, make", [
    ({"hash_on": "ip"}, lambda v: RequestForTest(client_ip=v)),
    ({"hash_on": "path"}, lambda v: RequestForTest(path="/" + v)),
    ({"hash_on": "header", "hash_on_header": "X-Tenant"},
     lambda v: RequestForTest(headers={"x-tenant": v})),
    ({"hash_on": "query_arg", "hash_on_query_arg": "user"},
     lambda v: RequestForTest(query=f"a=1&user={v}")),
    ({"hash_on": "uri_capture", "hash_on_uri_capture": "id"},
     lambda v: RequestForTest(uri_captures={"id": v})),
    ({"hash_on": "consumer"}, lambda v: RequestForTest(consumer={"id": v})),
    ({"hash_on": "cookie", "hash_on_cookie": "sticky"},
     lambda v: RequestForTest(headers={"cookie": f"other=1; sticky={v}"})),
])
def test_each_hash_source_is_sticky_per_value_and_spreads_values(fields, make):
    b = hashing_for_test(**fields)
    for value in ("alpha", "beta", "gamma"):
        assert len(spread_for_test(b, [make(value) for _ in range(10)])) == 1
    assert len(spread_for_test(b, [make(f"v{i}") for i in range(100)])) == 4


def test_consumer_falls_back_to_the_credential_id():
    b = hashing_for_test(hash_on="consumer")
    owners = {b.select(RequestForTest(credential={"id": f"c{i}"})).target for i in range(100)}
    assert len(owners) == 4


def test_query_arg_with_several_values_hashes_them_sorted():
    b = hashing_for_test(hash_on="query_arg", hash_on_query_arg="u")
    for i in range(50):
        one = b.select(RequestForTest(query=f"u=a{i}&u=b{i}"))
        assert b.select(RequestForTest(query=f"u=b{i}&u=a{i}")) == one


def test_fallback_is_used_when_the_first_source_is_absent():
    b = hashing_for_test(hash_on="header", hash_on_header="x-user", hash_fallback="ip")
    for i in range(50):
        by_ip = b.select(RequestForTest(client_ip=f"10.9.0.{i}"))
        assert b.select(RequestForTest(client_ip=f"10.9.0.{i}")) == by_ip
    with_header = [b.select(RequestForTest(client_ip="10.9.0.1", headers={"x-user": f"u{i}"}))
                   for i in range(100)]
    assert len(set(with_header)) == 4


def test_no_key_at_all_falls_back_to_round_robin():
    b = hashing_for_test(hash_on="header", hash_on_header="x-user")
    picks = Counter(b.select(RequestForTest()).target for _ in range(400))
    assert set(picks.values()) == {100}
    assert Counter(b.select().target for _ in range(400)) == picks  # request None: same


def test_absent_cookie_is_generated_exposed_and_then_sticky():
    b = hashing_for_test(hash_on="cookie", hash_on_cookie="sticky", hash_on_cookie_path="/app")
    request = RequestForTest()
    peer = b.select(request)
    name_value, path = request.shared[SET_COOKIE].split("; ")
    assert name_value.startswith("sticky=") and len(name_value) > 20 and path == "Path=/app"
    assert b.select(request) == peer  # a retry hashes to the same place
    again = RequestForTest(headers={"cookie": name_value})
    assert b.select(again) == peer and SET_COOKIE not in again.shared


def test_each_request_without_cookie_gets_its_own():
    b = hashing_for_test(hash_on="cookie", hash_on_cookie="sticky")
    cookies = set()
    for _ in range(20):
        request = RequestForTest()
        b.select(request)
        cookies.add(request.shared[SET_COOKIE])
    assert len(cookies) == 20


def test_slots_cap_keeps_a_huge_ring_small_and_working():
    targets = [f"10.{i // 250}.{i % 250}.1:80" for i in range(2000)]
    b = hashing_for_test(targets, slots=5000)
    owners = {b.select(RequestForTest(headers={"x-key": f"k{i}"})).target for i in range(3000)}
    assert len(owners) > 1000
