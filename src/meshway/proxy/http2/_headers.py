"""HTTP/2 header blocks <-> the codec-neutral `(name, value)` lists the pipeline works on.

Rules (RFC 9113 section 8):
- Requests carry `:method`, `:scheme`, `:path` (and `:authority`, which plays Host); the
  `h2` library has already rejected malformed blocks (uppercase names, unknown or repeated
  pseudo-headers, connection-specific fields, `te` other than `trailers`).
- Several `cookie` fields are joined with `"; "` before reaching an HTTP/1.1 upstream (8.2.3).
- Connection-specific fields (`connection`, every field it names, `keep-alive`,
  `proxy-connection`, `transfer-encoding`, `upgrade`, `te` except `te: trailers` towards an
  HTTP/2 upstream) never go out in an HTTP/2 block; `host` becomes `:authority` upstream.
"""
from __future__ import annotations

from typing import Iterable

__all__ = ["CONNECTION_SPECIFIC", "RequestHead", "decode_request", "encode_response", "encode_trailers",
           "encode_upstream_request"]

CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade", b"te", b"host", b"content-length"})


class RequestHead:
    """A decoded HTTP/2 request head."""

    __slots__ = ("method", "scheme", "authority", "url", "headers", "content_length", "content_type", "te_trailers",
                 "referer", "ua")
    version = "2.0"  # for the access log

    def __init__(self) -> None:
        self.method = "GET"
        self.scheme = "http"
        self.authority: str | None = None
        self.url = b"/"
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.content_type: bytes | None = None
        self.te_trailers = False
        self.referer = b"-"
        self.ua = b"-"


def decode_request(block: Iterable[tuple[bytes, bytes]]) -> RequestHead:
    """Pseudo-headers to fields, cookies joined; raises ValueError for what h2 lets through."""
    head = RequestHead()
    cookies: list[bytes] = []
    host = None
    for name, value in block:
        if name[:1] == b":":
            _pseudo(head, name, value)
        elif name == b"cookie":
            cookies.append(value)
        else:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"content-length":
                head.content_length = int(value)
            elif name == b"content-type":
                head.content_type = value
            elif name == b"te":
                head.te_trailers = True
            elif name == b"user-agent":
                head.ua = value
            elif name == b"referer":
                head.referer = value
            head.headers.append((name, value))
    if cookies:
        head.headers.append((b"cookie", b"; ".join(cookies)))
    if head.authority is None:
        head.authority = host
    if head.method == "CONNECT":
        raise ValueError("CONNECT is not supported")
    return head


def _pseudo(head: RequestHead, name: bytes, value: bytes) -> None:
    if name == b":method":
        head.method = value.decode("latin-1")
    elif name == b":path":
        head.url = value
    elif name == b":authority":
        head.authority = value.decode("latin-1")
    elif name == b":scheme":
        head.scheme = value.decode("latin-1")


def _named(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def _clean(headers: Iterable[tuple[bytes, bytes]], keep_te: bool = False) -> list[tuple[bytes, bytes]]:
    headers = list(headers)
    named = _named(headers)
    out = []
    for name, value in headers:
        low = name.lower()
        if low in CONNECTION_SPECIFIC or low in named or low[:1] == b":":
            if keep_te and low == b"te" and value.strip().lower() == b"trailers":
                out.append((b"te", b"trailers"))
            continue
        out.append((low, value))
    return out


def encode_response(status: int, headers: Iterable[tuple[bytes, bytes]], extra: Iterable[tuple[bytes, bytes]] = (),
                    content_length: bytes | None = None) -> list[tuple[bytes, bytes]]:
    """A response HEADERS block: `:status`, cleaned fields, the proxy's own, content-length."""
    out = [(b":status", b"%d" % status), *_clean(headers), *((k.lower(), v) for k, v in extra)]
    if content_length is not None:
        out.append((b"content-length", content_length))
    return out


def encode_trailers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Trailers towards an HTTP/2 peer: no pseudo or connection-specific fields."""
    return _clean(headers)


def encode_upstream_request(method: str, scheme: str, target: bytes, headers: list[tuple[bytes, bytes]],
                            content_length: int | None, te_trailers: bool) -> list[tuple[bytes, bytes]]:
    """The HEADERS block for an HTTP/2 upstream, from the pipeline's HTTP/1-style header list."""
    authority = b""
    for name, value in headers:
        if name.lower() == b"host":
            authority = value
            break
    out = [(b":method", method.encode("latin-1")), (b":scheme", scheme.encode("latin-1")),
           (b":authority", authority), (b":path", target)]
    out += _clean(headers)
    if te_trailers:
        out.append((b"te", b"trailers"))
    if content_length is not None:
        out.append((b"content-length", b"%d" % content_length))
    return out
