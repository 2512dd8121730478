"""The balancer's tries as a plugin Context records them (`_tries`), over a real compiled balancer:
Kong's try tables, failures, connect times, `upstream_status`, and the hash cookie set once."""
from __future__ import annotations

import time
from types import SimpleNamespace

from meshway.proxy._context import Context
from meshway.proxy._tries import connected, failed, pick
from tests.unit.balancer.balancer_for_test import balancer_for_test


def _ctx_for_test(**headers: str) -> Context:
    return Context(None, "10.0.0.1", "GET", "http", "example.test", "/", "",
                   [(k.encode(), v.encode()) for k, v in headers.items()], None, None, {}, time.time())


def _service_for_test(targets: list[str], **upstream) -> SimpleNamespace:
    balancer = balancer_for_test(targets, **upstream)
    return SimpleNamespace(balancer=balancer, hash_request=balancer.needs_request, fixed=False)  # an upstream (`_runtime`)


def test_a_failed_try_then_a_good_one_as_kong_logs_them():
    ctx, service = _ctx_for_test(), _service_for_test(["10.0.0.5:81", "10.0.0.6:82"])
    assert ctx.tries == [] and ctx.balancer_hostname is None and ctx.log_fields()["upstream_status"] == ""
    before = time.time_ns()
    first = pick(ctx, service, frozenset())
    failed(ctx, 502, connecting=True)
    second = pick(ctx, service, frozenset({first}))
    connected(ctx)
    ctx.response_status = 200  # the upstream's answer, as the relay sets it
    one, two = ctx.tries
    assert {(one["ip"], one["port"]), (two["ip"], two["port"])} == {("10.0.0.5", 81), ("10.0.0.6", 82)}
    assert (one["ip"], one["port"]) == (first.host, first.port) and (two["ip"], two["port"]) == (second.host, second.port)
    assert (one["state"], one["code"]) == ("failed", 502) and "state" not in two and "code" not in two
    assert before <= one["balancer_start_ns"] <= two["balancer_start_ns"] <= time.time_ns()
    for t in (one, two):
        assert t["balancer_start"] == t["balancer_start_ns"] // 1_000_000
        assert t["balancer_latency"] == t["balancer_latency_ns"] // 1_000_000 and t["balancer_latency_ns"] >= 0
    assert all(c is not None and 0 <= c < 5 for c in ctx.upstream_connect_time)
    assert ctx.balancer_hostname == second.hostname
    fields = ctx.log_fields()
    assert fields["tries"] == [one, two] and fields["upstream_status"] == "502, 200"


def test_a_timed_out_try_a_pooled_connection_and_no_peer_left():
    ctx, service = _ctx_for_test(), _service_for_test(["10.0.0.5:81"])
    peer = pick(ctx, service, frozenset())
    assert ctx.upstream_connect_time == [None]  # no connection made yet (or a pooled one reused)
    failed(ctx, 504)
    assert pick(ctx, service, frozenset({peer})) is None  # nothing left: no try recorded
    [only] = ctx.tries
    assert (only["state"], only["code"]) == ("failed", 504)
    ctx.response_source = "kong"  # the proxy answered 504 itself
    assert ctx.log_fields()["upstream_status"] == "504"


def test_the_hash_cookie_is_set_once_per_request_whatever_the_tries():
    ctx = _ctx_for_test()
    service = _service_for_test(["10.0.0.5:81", "10.0.0.6:82"], algorithm="consistent-hashing",
                                hash_on="cookie", hash_on_cookie="sticky")
    first = pick(ctx, service, frozenset())
    failed(ctx, 502, connecting=True)
    pick(ctx, service, frozenset({first}))
    cookies = [v for k, v in ctx.response_headers if k == b"Set-Cookie"]
    assert len(cookies) == 1 and cookies[0].startswith(b"sticky=")
    assert len(ctx.tries) == 2
