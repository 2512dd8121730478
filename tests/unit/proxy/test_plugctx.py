"""`Context.set_response_headers` on an empty list in C (`_core._plugctx.first_pairs`) against the
Python loop of the pure path, on random pairs: the same response headers, and the C path taken
for the usual ones (rate-limiting's five)."""
from __future__ import annotations

import random

import pytest

from meshway.proxy import _context, _core
from meshway.proxy._context import Context

_plugctx = pytest.importorskip("meshway.proxy._core._plugctx", reason="the compiled core is not built")

NAMES = ["X-RateLimit-Limit-Second", "x-ratelimit-limit-second", "RateLimit-Reset", "RateLimit-Remaining",
         "A", "a", "Bad Name", "Ünïcode", "X-Empty", "Set-Cookie"]
VALUES = ["100", "0", "", "text with spaces", "tab\there", "cr\rlf\n", "nul\x00", "é", "€", "~!#$%", 42, 3.5]


def context() -> Context:
    return Context(None, "10.0.0.1", "GET", "http", "example.com", "/", "", [], None, None, {}, 0.0)


def pure(pairs) -> list:
    ctx = context()
    compiled, _core.compiled = _core.compiled, None
    try:
        ctx.set_response_headers(pairs)
    finally:
        _core.compiled = compiled
    return ctx.response_headers


@pytest.mark.parametrize("seed", range(6))
def test_the_c_step_gives_the_python_loops_headers(seed):
    rnd = random.Random(seed)
    for name in NAMES:
        _context._name(name)  # most names are cached by the time a plugin sets them again
    taken = 0
    for _ in range(400):
        pairs = [(rnd.choice(NAMES), rnd.choice(VALUES)) for _ in range(rnd.randrange(0, 7))]
        if rnd.random() < 0.1:
            pairs.append((f"X-Fresh-{rnd.randrange(10**9)}", "1"))  # a name not yet encoded
        ctx = context()
        ctx.set_response_headers(list(pairs))
        assert ctx.response_headers == pure(list(pairs)), pairs
        taken += _plugctx.first_pairs(list(pairs), _context._NAMES) is not None
    assert taken > 20  # the C step answered for the usual pairs, not only the general path


def test_rate_limitings_headers_are_taken_in_c():
    pairs = [("X-RateLimit-Limit-Second", "100"), ("X-RateLimit-Remaining-Second", "99"), ("RateLimit-Limit", "100"),
             ("RateLimit-Remaining", "99"), ("RateLimit-Reset", "1")]
    context().set_response_headers(list(pairs))  # names encoded once
    first = _plugctx.first_pairs(list(pairs), _context._NAMES)
    assert first == [(b"X-RateLimit-Limit-Second", b"100"), (b"X-RateLimit-Remaining-Second", b"99"),
                     (b"RateLimit-Limit", b"100"), (b"RateLimit-Remaining", b"99"), (b"RateLimit-Reset", b"1")]
    _context._name("ratelimit-limit")
    twice = [("RateLimit-Limit", "1"), ("ratelimit-limit", "2")]  # the general path replaces the first
    assert _plugctx.first_pairs(twice, _context._NAMES) is None
    ctx = context()
    ctx.set_response_headers(twice)
    assert ctx.response_headers == [(b"ratelimit-limit", b"2")]


def test_the_identity_check_in_c_finds_exactly_the_identity_headers():
    rnd = random.Random(7)
    names = [b"X-Consumer-ID", b"x-consumer-id", b"X-CONSUMER-USERNAME", b"x-consumer-custom-id", b"X-Anonymous-Consumer",
             b"x-credential-identifier", b"X-Consumer-IE", b"x-consumer-usernamf", b"X-Anonymous-Consumex", b"Host",
             b"apikey", b"x-credential-identifiers", b"X-Consumer"]
    seen = set()
    for _ in range(2000):
        headers = [(rnd.choice(names), b"v") for _ in range(rnd.randrange(0, 6))]
        want = any(k.lower() in _context._CONSUMER_HEADERS for k, _ in headers)
        assert _plugctx.may_name_identity(headers) is want, headers
        seen.add(want)
        ctx = context()
        ctx.headers = list(headers)
        ctx.authenticate({"id": "c1", "username": "alice"}, {"id": "k1"})
        stripped = [(k, v) for k, v in headers if k.lower() not in _context._CONSUMER_HEADERS]
        assert ctx.headers == [*stripped, (b"X-Consumer-ID", b"c1"), (b"X-Consumer-Username", b"alice"),
                               (b"X-Credential-Identifier", b"k1")]
    assert seen == {True, False}


# -- Context made in C (`_plugctx.ContextMaker`, `_context.new_context`) -----------------------
def slots(ctx: Context) -> dict:
    return {name: getattr(ctx, name) for name in Context.__slots__}


@pytest.mark.parametrize("seed", range(4))
def test_a_context_made_in_c_equals_one_made_by_init(seed):
    rnd = random.Random(seed)
    values = [None, "", "x", 0, 1.5, [], [(b"a", b"b")], {"id": "r"}, ("t",), object()]
    for _ in range(200):
        args = [rnd.choice(values) for _ in range(12)]
        made, want = _context.new_context(*args), Context(*args)
        assert type(made) is Context and slots(made) == slots(want)
        assert made.headers is args[7] and made.route is args[8]  # the arguments themselves, as __init__ keeps them
    a, b = _context.new_context(*[None] * 12), _context.new_context(*[None] * 12)
    assert a.response_headers == [] and a.response_headers is not b.response_headers  # a list of its own each
    a.set_response_header("X-A", "1")
    a.shared["k"] = 1
    assert b.response_headers == [] and b.shared == {} and a.shared == {"k": 1}
    assert a.request_id != b.request_id and len(a.request_id) == 32  # made when read, as __init__'s None


def test_the_maker_refuses_a_class_whose_slots_it_would_not_all_fill():
    class Two:
        __slots__ = ("a", "b")

    args = tuple(f"x{i}" for i in range(12))
    with pytest.raises(TypeError, match="each slot once"):
        _plugctx.ContextMaker(Two, args, {}, ())

    class WithDict:
        pass

    with pytest.raises(TypeError, match="no __dict__"):
        _plugctx.ContextMaker(WithDict, args, {}, ())
