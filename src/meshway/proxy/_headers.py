"""Header policy between client and upstream, as pure functions over `(name, value)` byte pairs.

Rules:
- Hop-by-hop headers never cross the proxy: `Connection` and every header it names,
  `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding` (the codec re-frames the body),
  `Upgrade` (unless the exchange is a tunnel: then `Connection: upgrade` + `Upgrade` are kept),
  and every `Proxy-*` header. `Content-Length` is also left to the codec.
- Upstream requests get `X-Forwarded-For` (the client's list plus the peer address),
  `X-Forwarded-Proto/-Host/-Port/-Path`, `X-Forwarded-Prefix` (when a route path was stripped)
  and `X-Real-IP`; the client's own `X-Forwarded-*` values (other than For) are only believed
  from `trusted_ips`. `Host` is the upstream's unless the route preserves it.
- Request headers whose names contain `_` are not forwarded (nginx's `underscores_in_headers
  off`, which Kong keeps: `X_Auth_User` and `X-Auth-User` are one name to CGI-style upstreams);
  each one dropped is logged at debug level. `underscores_in_headers = on` forwards them
  (`keep_underscores`, called once per worker process).
- Responses get `Via: 1.1 meshway/<version>` (server_tokens) and latency headers (latency_tokens);
  the codec adds its own `Connection` and framing headers.
- Header names keep the case the peer sent; comparisons are case-insensitive.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, NamedTuple

__all__ = ["Forwarded", "HOP_BY_HOP", "connection_tokens", "keep_underscores", "upstream_request_headers",
           "downstream_response_headers"]

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade",
                        b"content-length", b"host"})
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                        b"x-forwarded-path", b"x-forwarded-prefix", b"x-real-ip"})
_REQUEST_SPECIAL = HOP_BY_HOP | _FORWARDED
_RESPONSE_DROP = HOP_BY_HOP - {b"host"}
log = logging.getLogger("meshway.proxy")


_UNDERSCORE_MARK = [b"_"]  # what marks a request header name as not forwarded (b"\n": nothing)


def _underscored(name: bytes) -> None:
    log.debug("request header %r not forwarded: underscore in its name", name[:64])


def keep_underscores(keep: bool) -> None:
    """The process's `underscores_in_headers` setting (a worker has one settings object)."""
    _UNDERSCORE_MARK[0] = b"\n" if keep else b"_"  # no header name holds a line feed
    _REQ_CLASS.clear()


class Forwarded(NamedTuple):
    """What the proxy tells the upstream about the client side of a request."""

    client_ip: str
    scheme: str
    host: str
    port: int
    path: str
    prefix: str | None = None
    trusted: bool = False


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The header names listed in `Connection` (lower case)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def upstream_request_headers(headers: list[tuple[bytes, bytes]], host: bytes, fwd: Forwarded, *,
                             via: bytes | None = None, tunnel: bool = False) -> list[tuple[bytes, bytes]]:
    """The request headers to send upstream, without framing headers."""
    named = connection_tokens(headers)
    out: list[tuple[bytes, bytes]] = [(b"Host", host)]
    xff = []
    client = {}
    for name, value in headers:
        low = name.lower()
        mark = _UNDERSCORE_MARK[0]
        if low in _REQUEST_SPECIAL or low in named or low.startswith(b"proxy-") or mark in low:
            if mark in low:
                _underscored(name)
            elif low == b"x-forwarded-for":
                xff.append(value)
            elif low in _FORWARDED:
                client[low] = value
            elif tunnel and low == b"upgrade":
                out.append((name, value))
            continue
        out.append((name, value))
    if tunnel:
        out.append((b"Connection", b"upgrade"))
    out.extend(_forwarded_headers(fwd, xff, client if fwd.trusted else {}))
    if via is not None:
        out.append((b"Via", via))
    return out


def _forwarded_headers(fwd: Forwarded, xff: list[bytes], client: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    ip = fwd.client_ip.encode()
    chain = b", ".join([*xff, ip]) if xff else ip
    out = [
        (b"X-Forwarded-For", chain),
        (b"X-Forwarded-Proto", client.get(b"x-forwarded-proto") or fwd.scheme.encode()),
        (b"X-Forwarded-Host", client.get(b"x-forwarded-host") or fwd.host.encode()),
        (b"X-Forwarded-Port", client.get(b"x-forwarded-port") or str(fwd.port).encode()),
        (b"X-Forwarded-Path", client.get(b"x-forwarded-path") or fwd.path.encode()),
    ]
    prefix = client.get(b"x-forwarded-prefix") or (fwd.prefix.encode() if fwd.prefix else None)
    if prefix:
        out.append((b"X-Forwarded-Prefix", prefix))
    out.append((b"X-Real-IP", client.get(b"x-real-ip") or ip))
    return out


def downstream_response_headers(headers: list[tuple[bytes, bytes]], *, tunnel: bool = False) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers the client may see, without framing headers."""
    kept = _plain_response_headers(headers, tunnel)
    if kept is not None:
        return kept
    named = connection_tokens(headers)
    out = []
    for name, value in headers:
        low = name.lower()
        if low in _RESPONSE_DROP or low in named or low.startswith(b"proxy-"):
            if tunnel and low == b"upgrade":
                out.append((name, value))
            continue
        out.append((name, value))
    if tunnel:
        out.append((b"Connection", b"upgrade"))
    return out


# -- single-pass encoders for the HTTP/1.1 fast path (same policy as the functions above) -------
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"upgrade"})

# What the encoders do with a header, by its name exactly as received. Peers send the same few
# spellings over and over, so one dict probe replaces `lower()` + set tests + a `proxy-` slice
# per header (saves ~0.1 us per header, ~1 us per proxied request).
_KEEP, _XFF, _CONNECTION, _UPGRADE, _LENGTH, _DROP, _ODD, _UNDERSCORE = range(8)
_CLASS_CACHE_MAX = 4096  # bounded: header names are client-controlled


def _classify(low: bytes, special: frozenset) -> int:
    if special is _REQUEST_SPECIAL and _UNDERSCORE_MARK[0] in low:
        return _UNDERSCORE
    if low == b"x-forwarded-for":
        return _XFF
    if low == b"connection":
        return _CONNECTION
    if low == b"upgrade":
        return _UPGRADE
    if low == b"content-length":
        return _LENGTH
    if low == b"close":  # a header Connection may name but _simple_connection lets through
        return _ODD      # (never seen in practice): the general functions handle it
    if low in special or low[:6] == b"proxy-":
        return _DROP
    return _KEEP


def _classes(special: frozenset) -> tuple[dict[bytes, int], Any]:
    table: dict[bytes, int] = {}

    def missing(name: bytes) -> int:
        if len(table) >= _CLASS_CACHE_MAX:
            table.clear()
        kind = table[name] = _classify(name.lower(), special)
        return kind

    return table, missing


_REQ_CLASS, _req_missing = _classes(_REQUEST_SPECIAL)
_RESP_CLASS, _resp_missing = _classes(_RESPONSE_DROP)
_SIMPLE_CONN_CACHE: dict[bytes, bool] = {}


def _simple_connection(value: bytes | None) -> bool:
    if value is None:
        return True
    got = _SIMPLE_CONN_CACHE.get(value)  # `keep-alive` / `close` in a few spellings: cached
    if got is None:
        got = all(t.strip().lower() in _PLAIN_CONNECTION for t in value.split(b","))
        if len(_SIMPLE_CONN_CACHE) < 256:
            _SIMPLE_CONN_CACHE[value] = got
    return got


def encode_request_headers(headers: list[tuple[bytes, bytes]], host: bytes, client_ip: bytes, fixed: bytes,
                           dynamic: bytes, *, via: bytes | None = None, tunnel: bool = False) -> bytes | None:
    """`upstream_request_headers` as wire bytes in one pass, for an untrusted client; None when the
    request needs the general function (a Connection header naming other headers).

    `fixed` holds the per-connection forwarded lines (`forwarded_fixed`), `dynamic` the per-route
    ones (`forwarded_dynamic`)."""
    parts = [b"Host: ", host, b"\r\n"]
    xff = conn = None
    classes = _REQ_CLASS
    for name, value in headers:
        kind = classes.get(name)
        if kind is None:
            kind = _req_missing(name)
        if kind == _KEEP:
            parts += (name, b": ", value, b"\r\n")
        elif kind == _XFF:
            xff = value if xff is None else xff + b", " + value
        elif kind == _CONNECTION:
            conn = value if conn is None else conn + b"," + value
        elif kind == _UPGRADE and tunnel:
            parts += (name, b": ", value, b"\r\n")
        elif kind == _ODD:
            return None
        elif kind == _UNDERSCORE:
            _underscored(name)
    if conn is not None and not _simple_connection(conn):
        return None
    if tunnel:
        parts.append(b"Connection: upgrade\r\n")
    parts += (b"X-Forwarded-For: ", xff + b", " + client_ip if xff else client_ip, b"\r\n", dynamic, fixed)
    if via is not None:
        parts += (b"Via: ", via, b"\r\n")
    return b"".join(parts)


def _plain_response_headers(headers: list[tuple[bytes, bytes]], tunnel: bool) -> list[tuple[bytes, bytes]] | None:
    """`downstream_response_headers` in one pass with the name cache; None when a Connection
    header names other headers (then the general loop applies)."""
    out = []
    conn = None
    classes = _RESP_CLASS
    for pair in headers:
        kind = classes.get(pair[0])
        if kind is None:
            kind = _resp_missing(pair[0])
        if kind == _KEEP or kind == _XFF:
            out.append(pair)
        elif kind == _CONNECTION:
            conn = pair[1] if conn is None else conn + b"," + pair[1]
        elif kind == _UPGRADE and tunnel:
            out.append(pair)
        elif kind == _ODD:
            return None
    if not _simple_connection(conn):
        return None
    if tunnel:
        out.append((b"Connection", b"upgrade"))
    return out


def forwarded_dynamic(fwd: Forwarded) -> bytes:
    """The forwarded lines that depend on the request's host and path."""
    out = b"X-Forwarded-Host: %s\r\nX-Forwarded-Path: %s\r\n" % (fwd.host.encode("latin-1"), fwd.path.encode("latin-1"))
    if fwd.prefix:
        out += b"X-Forwarded-Prefix: %s\r\n" % fwd.prefix.encode("latin-1")
    return out


def forwarded_fixed(client_ip: str, scheme: str, port: int) -> bytes:
    """The forwarded lines that are the same for every request of a connection."""
    return b"X-Forwarded-Proto: %s\r\nX-Forwarded-Port: %d\r\nX-Real-IP: %s\r\n" % (
        scheme.encode(), port, client_ip.encode())


def encode_response_headers(headers: list[tuple[bytes, bytes]], tunnel: bool = False) -> tuple[bytes, bytes | None]:
    """`downstream_response_headers` as wire bytes in one pass, and the upstream Content-Length."""
    parts = []
    length = conn = None
    classes = _RESP_CLASS
    for name, value in headers:
        kind = classes.get(name)
        if kind is None:
            kind = _resp_missing(name)
        if kind == _KEEP or kind == _XFF:  # X-Forwarded-For means nothing special in a response
            parts += (name, b": ", value, b"\r\n")
        elif kind == _LENGTH:
            length = value
        elif kind == _CONNECTION:
            conn = value if conn is None else conn + b"," + value
        elif kind == _UPGRADE and tunnel:
            parts += (name, b": ", value, b"\r\n")
        elif kind == _ODD:
            conn = b"?"  # not simple: the general function below
    if not _simple_connection(conn):
        kept = downstream_response_headers(headers, tunnel=tunnel)
        return b"".join(n + b": " + v + b"\r\n" for n, v in kept), length
    if tunnel:
        parts.append(b"Connection: upgrade\r\n")
    return b"".join(parts), length
