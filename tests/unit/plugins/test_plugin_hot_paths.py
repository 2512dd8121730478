"""The per-request fast paths of key-auth, rate-limiting and the engine's Context give the same
answers as the general ones: header replacement, identity headers, lazy request ids, the fused
check-and-count of the shared counters, Kong's key lookup order."""
from __future__ import annotations

import inspect
import re
from types import SimpleNamespace

import pytest
from ctx_for_test import CtxForTest, IndexForTest, consumer_for_test, make_plugin_for_test, run_phase_for_test

from meshway.plugins import _shm, attach_shared_memory, shared_counters
from meshway.plugins.bundled import _ratelimit
from meshway.plugins.bundled.key_auth import PLUGIN as KeyAuth
from meshway.plugins.bundled.rate_limiting import PLUGIN as RateLimiting
from meshway.proxy import _core
from meshway.proxy._context import Context
from meshway.proxy._plugins import EMPTY_CHAIN
from meshway.proxy._relay import ResponseRelay

T0 = 1_700_000_000.0
UPSTREAM = [(b"Server", b"origin"), (b"x-ratelimit-limit-minute", b"spoofed"), (b"Content-Type", b"text/plain")]


def context_for_test(headers=(), route=None, service=None, request_id=None) -> Context:
    return Context(request_id, "10.0.0.1", "GET", "http", "example.com", "/", "", list(headers),
                   route, service, {}, T0)


# -- Context: response headers ---------------------------------------------------------------
def test_set_response_headers_replaces_upstream_names_case_insensitively_and_keeps_order():
    ctx = context_for_test()
    ctx.response_headers = list(UPSTREAM)
    ctx.set_response_headers([("X-RateLimit-Limit-Minute", "5"), ("RateLimit-Reset", 7)])
    assert ctx.response_headers == [(b"Server", b"origin"), (b"Content-Type", b"text/plain"),
                                    (b"X-RateLimit-Limit-Minute", b"5"), (b"RateLimit-Reset", b"7")]


def test_the_same_name_twice_keeps_the_last_value():
    ctx = context_for_test()
    ctx.set_response_headers([("A", "1"), ("a", "2")])
    ctx.set_response_header("A", "3")
    assert ctx.response_headers == [(b"A", b"3")]


def test_set_response_header_sees_headers_added_by_other_means():
    ctx = context_for_test()
    ctx.set_response_header("X-One", "1")
    ctx.response_headers.append((b"x-two", b"engine"))  # the engine appends to the list directly
    ctx.add_response_header("X-Three", "a")
    ctx.set_response_header("X-Two", "2")
    ctx.set_response_header("x-three", "b")
    assert ctx.response_headers == [(b"X-One", b"1"), (b"X-Two", b"2"), (b"x-three", b"b")]
    ctx.response_headers = [(b"X-One", b"new list")]  # the engine replaces the list
    ctx.set_response_header("X-One", "again")
    assert ctx.response_headers == [(b"X-One", b"again")]
    ctx.remove_response_header("x-one")
    ctx.set_response_header("X-One", "back")
    assert ctx.get_response_header("x-one") == "back" and len(ctx.response_headers) == 1


# -- Context: request id, identity headers -----------------------------------------------------
def test_request_id_is_made_on_first_read_and_kept():
    ctx = context_for_test()
    rid = ctx.request_id
    assert re.fullmatch(r"[0-9a-f]{32}", rid) and ctx.request_id == rid
    assert context_for_test().request_id != rid
    assert context_for_test(request_id="given").request_id == "given"


def test_authenticate_replaces_client_sent_and_earlier_identity_headers():
    alice, bob = consumer_for_test("alice", "a-1"), consumer_for_test("bob")
    ctx = context_for_test([(b"Host", b"h"), (b"X-Consumer-Username", b"spoofed"), (b"x-anonymous-consumer", b"true")])
    ctx.authenticate(alice, {"id": "cred-a"})
    assert ctx.headers == [(b"Host", b"h"), (b"X-Consumer-ID", alice["id"].encode()), (b"X-Consumer-Custom-ID", b"a-1"),
                           (b"X-Consumer-Username", b"alice"), (b"X-Credential-Identifier", b"cred-a")]
    ctx.authenticate(bob, None)
    assert ctx.headers == [(b"Host", b"h"), (b"X-Consumer-ID", bob["id"].encode()), (b"X-Consumer-Username", b"bob"),
                           (b"X-Anonymous-Consumer", b"true")]
    again = context_for_test()
    again.authenticate(alice, {"id": "cred-a"}, identifier="alice-key-id")  # cached per identifier too
    assert again.get_header("x-credential-identifier") == "alice-key-id"
    again.headers.clear()  # a request's list is its own, never the cached one
    other = context_for_test()
    other.authenticate(bob, None)
    assert other.get_header("X-Consumer-Username") == "bob"


# -- shared counters: take == totals, then add when below every limit ---------------------------
@pytest.fixture
def shm_table(tmp_path, monkeypatch):
    monkeypatch.setattr(_shm, "_tables", {})
    monkeypatch.setattr(_shm, "_layout", None)
    attach_shared_memory(tmp_path, 0, 2)
    table = shared_counters("take", 16)
    assert isinstance(table, _shm.ShmCounters)
    return table


@pytest.mark.parametrize("kind", ["shm", "in-process"])
def test_take_counts_only_while_every_limit_holds(kind, request):
    table = request.getfixturevalue("shm_table") if kind == "shm" else _shm.InProcessCounters("take")
    keys = [table.key("second"), table.key("minute")]
    expires = [int(T0) + 1, int(T0) + 60]
    seen = [table.take(keys, (2, 3), expires, T0) for _ in range(4)]
    assert seen == [[0, 0], [1, 1], [2, 2], [2, 2]]  # the second's limit stops the count in both
    assert table.totals(keys, T0) == [2, 2]
    assert table.take(keys, (2, 3), [int(T0) + 2, int(T0) + 60], T0 + 1) == [0, 2]  # the second expired
    assert table.totals(keys, T0 + 1) == [1, 3]


def test_take_sums_other_workers_regions(shm_table, tmp_path):
    other = _shm.ShmCounters("take", shm_table._mm, 1, 2, shm_table.mask + 1)
    key = shm_table.key("k")
    other.add([key, key], [int(T0) + 60] * 2, T0)
    assert shm_table.take([key], (3,), [int(T0) + 60], T0) == [2]
    assert shm_table.take([key], (3,), [int(T0) + 60], T0) == [3]
    assert other.totals([key], T0) == [3]


# -- rate-limiting with the engine's Context ----------------------------------------------------
@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr(_shm, "_tables", {})  # a fresh policy-local table, gone after the test
    now = [T0 + 0.25]
    monkeypatch.setattr(_ratelimit, "now", lambda: now[0])
    return now


def limited_request(plugin) -> Context:
    ctx = context_for_test(route={"id": "r1"}, service={"id": "s1"})
    result = plugin.access(ctx)
    if inspect.iscoroutine(result):
        with pytest.raises(StopIteration):
            result.send(None)  # policy local never waits
    if ctx.exited is None:  # the headers it set apply over the upstream's, as the relay applies them
        ResponseRelay._response_phase(SimpleNamespace(chain=EMPTY_CHAIN), ctx, 200, list(UPSTREAM))
    return ctx


def test_rate_limiting_headers_through_the_engine_context(clock):
    plugin = make_plugin_for_test(RateLimiting, {"minute": 2})
    ctx = limited_request(plugin)
    assert ctx.response_headers == [
        (b"Server", b"origin"), (b"Content-Type", b"text/plain"),  # the upstream's spoofed header is replaced
        (b"X-RateLimit-Limit-Minute", b"2"), (b"X-RateLimit-Remaining-Minute", b"1"),
        (b"RateLimit-Limit", b"2"), (b"RateLimit-Remaining", b"1"), (b"RateLimit-Reset", b"40")]
    limited_request(plugin)
    refused = limited_request(plugin)
    assert refused.exited.status == 429
    assert dict(refused.exited.headers)[b"Retry-After"] == b"40"
    assert dict(refused.exited.headers)[b"X-RateLimit-Remaining-Minute"] == b"0"


@pytest.mark.parametrize("limit, texts", [(3, (b"3", b"2", b"1")), (2.5, (b"2.5", b"1.5", b"0.5"))])
def test_one_period_headers_are_the_same_whether_or_not_a_plugin_set_response_headers_before(clock, limit, texts):
    """The encoded pairs a whole-number limit assigns to an empty list are what the general
    `set_response_headers` appends after an earlier plugin's header (and what a fractional
    limit, which always takes the general path, gives)."""
    plugin = make_plugin_for_test(RateLimiting, {"minute": limit})
    first = context_for_test(route={"id": "r1"}, service={"id": "s1"})
    plugin.access(first)
    later = context_for_test(route={"id": "r1"}, service={"id": "s1"})
    later.response_headers = [(b"X-Earlier", b"e"), (b"ratelimit-limit", b"spoofed")]
    plugin.access(later)

    def pairs(remaining: bytes) -> list:
        return [(b"X-RateLimit-Limit-Minute", texts[0]), (b"X-RateLimit-Remaining-Minute", remaining),
                (b"RateLimit-Limit", texts[0]), (b"RateLimit-Remaining", remaining), (b"RateLimit-Reset", b"40")]

    assert first.response_headers == pairs(texts[1])
    assert later.response_headers == [(b"X-Earlier", b"e"), *pairs(texts[2])]


def test_reset_and_keys_follow_the_second(clock):
    plugin = make_plugin_for_test(RateLimiting, {"second": 1, "minute": 10})
    assert limited_request(plugin).get_response_header("RateLimit-Reset") == "1"
    assert limited_request(plugin).exited.status == 429
    clock[0] += 1
    ctx = limited_request(plugin)
    assert ctx.exited is None and ctx.get_response_header("X-RateLimit-Remaining-Minute") == "8"
    assert ctx.get_response_header("RateLimit-Remaining") == "0"  # the second is the tighter
    clock[0] += 19
    assert limited_request(plugin).get_response_header("RateLimit-Reset") == "1"


# -- key-auth: the header fast path keeps Kong's order (per name: header, then query) ----------
ALICE, BOB = consumer_for_test("alice"), consumer_for_test("bob")
CREDS = [{"id": "ca", "consumer": {"id": ALICE["id"]}, "key": "ka"},
         {"id": "cb", "consumer": {"id": BOB["id"]}, "key": "kb"}]


@pytest.mark.parametrize("headers, query, who", [
    ({"x-first": "ka"}, "second=kb", ALICE),   # first name in a header
    ({"x-second": "kb"}, "", BOB),             # a later name, no query
    ({"x-second": "kb"}, "x-first=ka", ALICE),  # an earlier name in the query wins
    ({"x-first": "ka", "x-second": "kb"}, "x-first=kb", ALICE),
])
def test_key_lookup_order(headers, query, who):
    plugin = make_plugin_for_test(KeyAuth, {"key_names": ["x-first", "x-second"]},
                                  IndexForTest(consumers=[ALICE, BOB], keyauth_credentials=CREDS))
    ctx = CtxForTest(headers=headers, query=query)
    assert run_phase_for_test(plugin, "access", ctx) is None
    assert ctx.consumer == who


def test_key_auth_through_the_engine_context():
    plugin = make_plugin_for_test(KeyAuth, {}, IndexForTest(consumers=[ALICE], keyauth_credentials=CREDS))
    ctx = context_for_test([(b"Host", b"h"), (b"ApiKey", b"ka")])
    plugin.access(ctx)
    assert ctx.exited is None and ctx.consumer == ALICE
    assert ctx.get_header("x-credential-identifier") == "ca"
    ctx = context_for_test([(b"apikey", b"nope")])
    plugin.access(ctx)
    assert ctx.exited.status == 401


@pytest.mark.parametrize("config", [{}, {"key_names": ["X-Key", "apikey"]}, {"anonymous": ALICE["id"]},
                                    {"run_on_preflight": False}])
def test_key_auth_looks_up_header_bytes_as_get_header_decodes_them(config, monkeypatch):
    """The compiled path's lookup of the first name's header bytes gives what the general path
    (`get_header`, str keys) gives: consumer, upstream headers, answer; latin-1 keys included."""
    compiled = pytest.importorskip("meshway.proxy._core._h1parse", reason="the compiled core is not built")
    creds = [*CREDS, {"id": "cé", "consumer": {"id": BOB["id"]}, "key": "clé"},
             {"id": "cx", "consumer": {"id": BOB["id"]}, "key": "expired", "ttl": 1, "created_at": 1}]
    plugin = make_plugin_for_test(KeyAuth, config, IndexForTest(consumers=[ALICE, BOB], keyauth_credentials=creds))
    name = (config.get("key_names") or ["apikey"])[0].encode()
    cases = [[(name, b"ka")], [(name, b"kb"), (b"X-Consumer-ID", b"spoofed")], [(name, "clé".encode("latin-1"))],
             [(name, "clé".encode())], [(name, b"")], [(name, b"nope")], [(name, b"expired")], [(b"Host", b"h")],
             [(name.upper(), b"kb")]]

    def outcome(headers, compiled):
        monkeypatch.setattr(_core, "compiled", compiled)
        ctx = context_for_test(headers)
        plugin.access(ctx)
        return ctx.consumer, ctx.credential, ctx.headers, ctx.exited and (ctx.exited.status, ctx.exited.body)

    for headers in cases:
        assert outcome(list(headers), compiled) == outcome(list(headers), None), headers
