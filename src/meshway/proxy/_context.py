"""`Context`: the `RequestContext` plugins see, built only for requests whose route has plugins.

Request and response headers are kept as the codec's `(bytes, bytes)` pairs so that a request
no plugin touched is forwarded without re-encoding; plugin calls translate at the edge.

A header a plugin sets can carry request data (a template over a decoded query argument): as
OpenResty does, control characters (CR, LF, NUL...) in its value, and anything but token
characters in its name, are percent-encoded, so no plugin can split a message; text beyond
latin-1 is sent as UTF-8.
"""
from __future__ import annotations

import os
import random
import re
import time
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from . import _core, _tries
from ._errors import encode_body

try:  # Context steps in C (used only where `_core.compiled` is on): see `_core/_plugctx.pyx`
    from ._core._plugctx import ContextMaker as _ContextMaker
    from ._core._plugctx import first_pairs as _first_pairs, may_name_identity as _may_name_identity
except ImportError:
    _first_pairs = _may_name_identity = _ContextMaker = None

__all__ = ["Context", "Exit", "new_context"]


class Exit:
    """An answer a plugin gave with `ctx.exit()`: status, body bytes, headers."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]):
        self.status = status
        self.body = body
        self.headers = headers



_first = itemgetter(0)
_NO_LATENCIES: Mapping[str, Any] = MappingProxyType({"proxy": 0, "kong": 0, "request": 0})
# Request ids: 128 random bits like nginx's $request_id, from a generator seeded by os.urandom
# instead of os.urandom per request (a getrandom syscall each, ~1 us); not for secrets.
_getrandbits = random.Random(os.urandom(32)).getrandbits

_CONSUMER_HEADERS = frozenset({b"x-consumer-id", b"x-consumer-custom-id", b"x-consumer-username",
                               b"x-credential-identifier", b"x-anonymous-consumer"})
_CONSUMER_LENGTHS = frozenset(map(len, _CONSUMER_HEADERS))
_CACHE_MAX = 4096  # bounds for the caches below: names and consumers come from config and clients


def _without_identity(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` without the identity headers (_CONSUMER_HEADERS); the same list when none is
    there (the usual case), found at C speed by their lengths."""
    if _CONSUMER_LENGTHS.isdisjoint(map(len, map(_first, headers))):
        return headers
    return [(k, v) for k, v in headers if k.lower() not in _CONSUMER_HEADERS]


# Plugins pass the same few header names (their config's) on every request: their latin-1
# encodings, as given and lowercased, are computed once. (name -> (raw, low))
_NAMES: dict[str, tuple[bytes, bytes]] = {}


_NAME_BAD = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _name(name: str) -> tuple[bytes, bytes]:
    found = _NAMES.get(name)
    if found is None:
        if len(_NAMES) >= _CACHE_MAX:
            _NAMES.clear()
        raw = _safe(_latin1(name), _NAME_BAD)
        found = _NAMES[name] = (raw, raw.lower())
    return found


# Plugin header values seen before, checked and encoded: plugins send the same few (config
# values, small counters), so one dict probe replaces the check and the encoding.
_ENCODED: dict[str, bytes] = {}
_ENCODED_VALUE_MAX = 64  # longer values (ids, tokens) vary: not kept


def _value(value: Any) -> bytes:
    if value.__class__ is int:  # rate-limiting's counters: nothing to check
        return b"%d" % value
    if value.__class__ is not str:
        value = str(value)
    raw = _ENCODED.get(value)
    if raw is not None:
        return raw
    if value.isascii() and value.isprintable():  # the usual value: two C checks, no regex
        raw = value.encode("ascii")
    else:
        raw = _safe(_latin1(value), _VALUE_BAD)
    if len(value) <= _ENCODED_VALUE_MAX:
        if len(_ENCODED) >= _CACHE_MAX:
            _ENCODED.clear()
        _ENCODED[value] = raw
    return raw


def _latin1(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _safe(raw: bytes, bad: re.Pattern) -> bytes:
    if bad.search(raw) is None:
        return raw
    return bad.sub(lambda m: b"%%%02X" % m.group(0)[0], raw)


# The upstream headers an authentication sets, per (consumer, credential, identifier) objects;
# an entry keeps its objects alive, so their ids cannot be reused while it is cached.
_IDENTITY: dict[tuple[int, int, Any], tuple[Any, Any, tuple[tuple[bytes, bytes], ...]]] = {}


def _identity_headers(consumer: Mapping[str, Any] | None, credential: Mapping[str, Any] | None,
                      identifier: str | None) -> tuple[tuple[bytes, bytes], ...]:
    key = (id(consumer), id(credential), identifier)
    found = _IDENTITY.get(key)
    if found is not None and found[0] is consumer and found[1] is credential:
        return found[2]
    headers = []
    if consumer:
        for name, field in ((b"X-Consumer-ID", "id"), (b"X-Consumer-Custom-ID", "custom_id"),
                            (b"X-Consumer-Username", "username")):
            if consumer.get(field) is not None:
                headers.append((name, _value(consumer[field])))
    if credential:
        # Kong sends the credential's id unless the plugin names another identifier:
        # never the secret itself (an API key must not leak upstream).
        ident = identifier if identifier is not None else credential.get("id")
        if ident is not None:
            headers.append((b"X-Credential-Identifier", _value(ident)))
    else:
        headers.append((b"X-Anonymous-Consumer", b"true"))
    if len(_IDENTITY) >= _CACHE_MAX:
        _IDENTITY.clear()
    _IDENTITY[key] = (consumer, credential, tuple(headers))
    return tuple(headers)


def _without_name(headers: list[tuple[bytes, bytes]], low: bytes) -> list[tuple[bytes, bytes]]:
    """`_without` for one name; lengths are compared first, so most headers cost no `lower()`."""
    n = len(low)
    for k, _ in headers:
        if len(k) == n and k.lower() == low:
            return [(k, v) for k, v in headers if k.lower() != low]
    return headers


class Context:
    """The per-request view of the plugin API (meshway.plugins.RequestContext).

    Slots, not an instance dict: the engine and the plugins read fields a request never sets
    (`exited`, `consumer`, `body_replaced`...) several times per request, and a class-level
    default read through an instance with a dict is a generic attribute lookup each time
    (CPython 3.11 specialises neither it nor an instance dict past 30 keys); a slot read is one
    specialised instruction. `shared` is made on first use: most requests' plugins never read it."""

    __slots__ = ("_request_id", "client_ip", "method", "scheme", "host", "path", "query", "headers", "route",
                 "service", "uri_captures", "started_at", "_shared", "response_headers", "balancer_tries",
                 "http_version", "client_trusted", "latencies", "consumer", "credential", "authenticated_groups",
                 "status", "exited", "upstream_path", "upstream_query", "body", "body_replaced", "body_limit",
                 "response_status", "response_trailers", "response_source", "upstream_uri", "request_size",
                 "response_size")

    def __init__(self, request_id: str | None, client_ip: str, method: str, scheme: str, host: str, path: str,
                 query: str, headers: list[tuple[bytes, bytes]], route: Mapping | None, service: Mapping | None,
                 captures: Mapping[str, str], started_at: float):
        self._request_id = request_id  # None: made when first read (few requests need one)
        self.client_ip = client_ip
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path
        self.query = query
        self.headers = headers
        self.route = route
        self.service = service
        self.uri_captures = captures
        self.started_at = started_at
        self._shared: dict[str, Any] | None = None  # `shared`, made when first read
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.balancer_tries: tuple | list = ()  # the proxy's raw record of its tries (_tries), see `tries`
        self.http_version = "1.1"  # the client's HTTP version as Kong's tracing writes it; HTTP/2 sets "2.0"
        self.client_trusted = False  # the client's address is in trusted_ips (set only for those)
        self.latencies: Mapping[str, Any] = _NO_LATENCIES  # the engine replaces it before the log phase
        self.consumer: Mapping[str, Any] | None = None
        self.credential: Mapping[str, Any] | None = None
        self.authenticated_groups: list[str] | None = None
        self.status: int | None = None
        self.exited: Exit | None = None
        self.upstream_path: str | None = None
        self.upstream_query: str | None = None
        self.body: bytes | None = None
        self.body_replaced = False
        self.body_limit = 0
        self.response_status: int | None = None
        self.response_trailers: list[tuple[bytes, bytes]] | None = None  # an HTTP/2 upstream's, for the last `body` call
        self.response_source = "upstream"
        self.upstream_uri = ""
        self.request_size = 0
        self.response_size = 0

    @property
    def shared(self) -> dict[str, Any]:
        """Kong's `kong.ctx.shared`: a dict for plugins of one request, made when first read."""
        shared = self._shared
        if shared is None:
            shared = self._shared = {}
        return shared

    @property
    def request_id(self) -> str:
        rid = self._request_id
        if rid is None:
            rid = self._request_id = "%032x" % _getrandbits(128)
        return rid

    @request_id.setter
    def request_id(self, value: str) -> None:
        self._request_id = value

    @property
    def tries(self) -> list[dict[str, Any]]:
        """Kong's `balancer_data.tries`: one table per try (see `_tries`), built when read."""
        return _tries.kong_tries(self.balancer_tries)

    @property
    def upstream_connect_time(self) -> list[float | None]:
        """Per try, seconds from the dial to the connection or its failure (nginx's variable);
        None where a pooled connection was reused."""
        return [t[_tries.CONNECT] for t in self.balancer_tries]

    @property
    def balancer_hostname(self) -> str | None:
        """The last pick's host name (Kong's `balancer_data.hostname`), None before any try."""
        return self.balancer_tries[-1][_tries.PEER].hostname if self.balancer_tries else None

    @property
    def consumer_id(self) -> str | None:
        return self.consumer.get("id") if self.consumer else None

    # -- request headers
    def get_header(self, name: str) -> str | None:
        low = (_NAMES.get(name) or _name(name))[1]
        core = _core.compiled
        if core is not None:  # the same search in C (authentication plugins call this per request)
            value = core.header_value(self.headers, low)
            return None if value is None else value.decode("latin-1")
        n = len(low)
        for k, v in self.headers:
            if len(k) == n and k.lower() == low:  # lengths first: most names cost no lower()
                return v.decode("latin-1")
        return None

    def get_headers(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.headers]

    def set_header(self, name: str, value: str) -> None:
        raw, low = _NAMES.get(name) or _name(name)
        hdrs = self.headers = _without_name(self.headers, low)
        hdrs.append((raw, _value(value)))

    def add_header(self, name: str, value: str) -> None:
        self.headers.append(((_NAMES.get(name) or _name(name))[0], _value(value)))

    def remove_header(self, name: str) -> None:
        self.headers = _without_name(self.headers, (_NAMES.get(name) or _name(name))[1])

    def set_path(self, path: str) -> None:
        self.upstream_path = path

    def set_query(self, query: str) -> None:
        self.upstream_query = query

    def set_method(self, method: str) -> None:
        """Kong's `kong.service.request.set_method`; a method that is not an HTTP token (it goes
        into the request line as is) is refused with ValueError."""
        upper = method.upper()
        if not upper.isascii() or _NAME_BAD.search(upper.encode()) is not None or not upper:
            raise ValueError(f"invalid method {method[:32]!r}")
        self.method = upper

    def read_body(self) -> bytes | None:
        return self.body

    def set_body(self, body: bytes) -> None:
        self.body = body
        self.body_replaced = True

    def authenticate(self, consumer: Mapping[str, Any] | None, credential: Mapping[str, Any] | None,
                     identifier: str | None = None) -> None:
        self.consumer = consumer
        self.credential = credential
        hdrs = self.headers
        # `_without_identity` and `_identity_headers`' cache hit, inline: this runs per request.
        if (_may_name_identity(hdrs) if _core.compiled is not None and _may_name_identity is not None
                else not _CONSUMER_LENGTHS.isdisjoint(map(len, map(_first, hdrs)))):
            hdrs = self.headers = _without_identity(hdrs)
        found = _IDENTITY.get((id(consumer), id(credential), identifier))
        if found is not None and found[0] is consumer and found[1] is credential:
            hdrs += found[2]
        else:
            hdrs += _identity_headers(consumer, credential, identifier)

    def limit_request_body(self, max_bytes: int) -> None:
        self.body_limit = max_bytes

    def exit(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        raw, ctype = encode_body(body)
        hdrs = [((_NAMES.get(k) or _name(k))[0], _value(v)) for k, v in (headers or {}).items()]
        if ctype and not any(k.lower() == b"content-type" for k, _ in hdrs):
            hdrs.append((b"Content-Type", ctype))
        self.exited = Exit(status, raw, hdrs)
        self.status = status
        self.response_source = "exit"

    # -- response side
    def get_response_header(self, name: str) -> str | None:
        low = (_NAMES.get(name) or _name(name))[1]
        n = len(low)
        for k, v in self.response_headers:
            if len(k) == n and k.lower() == low:
                return v.decode("latin-1")
        return None

    def set_response_header(self, name: str, value: str) -> None:
        self.set_response_headers(((name, value),))

    def set_response_headers(self, headers: Iterable[tuple[str, Any]]) -> None:
        """`set_response_header` for each pair, in order (Kong's `kong.response.set_headers`).

        Plugins set several headers at once (rate-limiting: five) that the upstream seldom sent:
        in C when compiled (~20k instructions in Python for rate-limiting's five)."""
        core = _core.compiled
        if core is not None:
            if not self.response_headers and headers.__class__ is list and _first_pairs is not None:
                first = _first_pairs(headers, _NAMES)  # the usual case in C without searches; None: unusual
                if first is not None:
                    self.response_headers = first
                    return
            self.response_headers = core.set_header_pairs(self.response_headers, headers, _NAMES, _name, _value)
            return
        hdrs = self.response_headers
        for name, value in headers:
            raw, low = _NAMES.get(name) or _name(name)
            n = len(low)
            for k, _ in hdrs:
                if len(k) == n and k.lower() == low:
                    hdrs = self.response_headers = [(k, v) for k, v in hdrs if k.lower() != low]
                    break
            hdrs.append((raw, (value.__class__ is str and _ENCODED.get(value)) or _value(value)))

    def add_response_header(self, name: str, value: str) -> None:
        self.response_headers.append(((_NAMES.get(name) or _name(name))[0], _value(value)))

    def remove_response_header(self, name: str) -> None:
        self.response_headers = _without_name(self.response_headers, (_NAMES.get(name) or _name(name))[1])

    def log_fields(self) -> dict[str, Any]:
        """Kong's log-serializer shape."""
        query = dict(p.partition("=")[::2] for p in self.query.split("&") if p) if self.query else {}
        url_q = f"?{self.query}" if self.query else ""
        return {
            "request": {"uri": self.path + url_q, "url": f"{self.scheme}://{self.host}{self.path}{url_q}",
                        "querystring": query, "method": self.method, "size": self.request_size,
                        "headers": {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.headers}},
            "upstream_uri": self.upstream_uri,
            "upstream_status": _tries.upstream_status(
                self.balancer_tries, self.response_status if self.response_source == "upstream" else None),
            "response": {"status": self.response_status or self.status, "size": self.response_size,
                         "headers": {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.response_headers}},
            "tries": self.tries,
            "route": dict(self.route) if self.route else None,
            "service": dict(self.service) if self.service else None,
            "consumer": dict(self.consumer) if self.consumer else None,
            "authenticated_entity": {"id": self.credential.get("id")} if self.credential else None,
            "latencies": dict(self.latencies),
            "client_ip": self.client_ip,
            "started_at": int(self.started_at * 1000),
            "source": self.response_source,
        }


_ARGS = ("_request_id", "client_ip", "method", "scheme", "host", "path", "query", "headers", "route", "service",
         "uri_captures", "started_at")  # Context's positional arguments, by the slot each sets


def _maker() -> Any:
    """`Context` made in C where the compiled core is on (`_plugctx.ContextMaker`: the slots set
    without the Python `__init__`), its defaults read from a Context `__init__` made; None on a
    build without it. Codecs use it only where `_core.compiled` is on."""
    if _ContextMaker is None:
        return None
    ref = Context(*[None] * len(_ARGS))
    fresh = tuple(n for n in Context.__slots__ if n not in _ARGS and getattr(ref, n).__class__ is list)
    constants = {n: getattr(ref, n) for n in Context.__slots__ if n not in _ARGS and n not in fresh}
    if any(getattr(ref, n) != [] for n in fresh) or any(v.__class__ in (dict, set) for v in constants.values()):
        raise TypeError("Context's defaults must be immutable or new empty lists")
    return _ContextMaker(Context, _ARGS, constants, fresh).new


new_context = _maker()


def wall_ms() -> int:
    return int(time.time() * 1000)
