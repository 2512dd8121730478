"""HTTP/2 header blocks <-> the codec-neutral `(name, value)` lists the pipeline works on.

Rules (RFC 9113 section 8):
- Requests carry `:method`, `:scheme`, `:path` (and `:authority`, which plays Host). Malformed
  blocks are refused here (h2's own inbound validation is off: this one pass is cheaper):
  names not lowercase tokens, values with NUL/CR/LF or surrounding whitespace, unknown,
  repeated or late pseudo-headers, a missing required one, connection-specific fields, `te`
  other than `trailers`, a bad or conflicting content-length; pseudo-headers in trailers;
  `:method` or `:scheme` not a token, `:path` or `:authority` with a control character, a space
  or DEL (as HTTP/1.1's parser refuses them in a request line: the same rules for both).
- Several `cookie` fields are joined with `"; "` before reaching an HTTP/1.1 upstream (8.2.3).
- Fields with CR, LF or NUL in their value are dropped (outbound h2 validation is off).
- Connection-specific fields (`connection`, every field it names, `keep-alive`,
  `proxy-connection`, `transfer-encoding`, `upgrade`, `te` except `te: trailers` towards an
  HTTP/2 upstream) never go out in an HTTP/2 block; `host` becomes `:authority` upstream.
"""
from __future__ import annotations

import re
from typing import Iterable

__all__ = ["CONNECTION_SPECIFIC", "Malformed", "RequestHead", "check_trailers", "decode_request", "encode_response", "encode_trailers",
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


class Malformed(ValueError):
    """A request RFC 9113 section 8.1.1 calls malformed: a stream error of type PROTOCOL_ERROR."""


_NAME_OK = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_VALUE_BAD = re.compile(rb"[\x00\r\n]|^[ \t]|[ \t]$")
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
_REQUIRED = frozenset({b":method", b":scheme", b":path"})
_NOTED = frozenset({b"cookie", b"host", b"content-length", b"content-type", b"te", b"user-agent", b"referer"})
_FORBIDDEN = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})


# Fields already found valid (a pure check of name and value): requests repeat most of theirs.
_VALID: dict[tuple[bytes, bytes], None] = {}
_VALID_MAX = 2048
_VALID_FIELD_MAX = 256


def _check_field(name: bytes, value: bytes) -> None:
    if (name, value) in _VALID:
        return
    _check_new_field(name, value)
    if len(name) + len(value) <= _VALID_FIELD_MAX:
        if len(_VALID) >= _VALID_MAX:
            _VALID.clear()
        _VALID[(name, value)] = None


def _check_new_field(name: bytes, value: bytes) -> None:
    if _NAME_OK.fullmatch(name) is None:
        raise Malformed(f"invalid field name {name[:64]!r}")
    if value and _VALUE_BAD.search(value) is not None:
        raise Malformed(f"invalid value in field {name[:64]!r}")
    if name in _FORBIDDEN:
        raise Malformed(f"connection-specific field {name!r}")
    if name == b"te" and value != b"trailers":
        raise Malformed("te other than trailers")


def decode_request(block: Iterable[tuple[bytes, bytes]]) -> RequestHead:
    """Validate (RFC 9113 8.2, 8.3) and decode a request block; raises `Malformed`, or ValueError
    for what HTTP/2 allows and the proxy does not serve (CONNECT)."""
    head = RequestHead()
    headers = head.headers
    cookies: list[bytes] = []
    host = None
    seen: set[bytes] = set()
    regular = False
    valid = _VALID
    for name, value in block:
        if name[:1] == b":":
            if regular or name in seen or name not in _REQUEST_PSEUDO:
                raise Malformed(f"misplaced, repeated or unknown pseudo-header {name!r}")
            seen.add(name)
            _pseudo(head, name, value)
            continue
        regular = True
        if (name, value) not in valid:
            _check_field(name, value)
        if name in _NOTED:
            if name == b"cookie":
                cookies.append(value)
                continue
            if name == b"host":
                host = value.decode("latin-1")
            else:
                _note(head, name, value)
        headers.append((name, value))
    if head.method == "CONNECT" or head.method == "TRACE":  # 405, as on HTTP/1.1
        raise ValueError(f"{head.method} is not supported")
    if not _REQUIRED <= seen or not head.url:
        raise Malformed("missing :method, :scheme or :path")
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    if head.authority is None:
        head.authority = host
    return head


def _note(head: RequestHead, name: bytes, value: bytes) -> None:
    """The fields the pipeline reads from the head (other than host and cookie)."""
    if name == b"content-length":
        if not value.isdigit() or (head.content_length is not None and head.content_length != int(value)):
            raise Malformed("invalid content-length")
        head.content_length = int(value)
    elif name == b"content-type":
        head.content_type = value
    elif name == b"te":
        head.te_trailers = True
    elif name == b"user-agent":
        head.ua = value
    elif name == b"referer":
        head.referer = value


def check_trailers(block: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A client's trailers, validated like request fields (no pseudo-headers)."""
    out = []
    for name, value in block:
        if name[:1] == b":":
            raise Malformed("pseudo-header in trailers")
        _check_field(name, value)
        out.append((name, value))
    return out


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET_BAD = re.compile(rb"[\x00-\x20\x7f]")


_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_AUTHORITY_OK: dict[bytes, None] = {}  # authorities found valid: clients repeat theirs
_PATH_OK: dict[bytes, None] = {}  # paths found valid (bounded like _VALID)


def _pseudo(head: RequestHead, name: bytes, value: bytes) -> None:
    """Take a pseudo-header, validated: the usual values cost a dict probe."""
    if name == b":method":
        method = _METHODS.get(value)
        if method is None:
            if _TOKEN.fullmatch(value) is None:
                raise Malformed("invalid :method")
            method = value.decode("latin-1")
        head.method = method
    elif name == b":path":
        if value not in _PATH_OK:
            _check_target(value, _PATH_OK)
        head.url = value
    elif name == b":authority":
        if value not in _AUTHORITY_OK:
            _check_target(value, _AUTHORITY_OK)
        head.authority = value.decode("latin-1")
    elif name == b":scheme":
        if value != b"https" and value != b"http" and _TOKEN.fullmatch(value) is None:
            raise Malformed("invalid :scheme")
        head.scheme = value.decode("latin-1")


def _check_target(value: bytes, known: dict[bytes, None]) -> None:
    """Refuse a :path or :authority with a control character, a space or DEL; remember a good one
    (requests repeat them, and a regex scan costs ~60 instructions a byte)."""
    if _TARGET_BAD.search(value) is not None:
        raise Malformed("control character or space in :path or :authority")
    if len(value) <= _VALID_FIELD_MAX:
        if len(known) >= _VALID_MAX:
            known.clear()
        known[value] = None


def _named(pairs: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for low, value in pairs:
        if low == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


# Names as received -> lowercase, for names that are plain fields (not pseudo, not connection-
# specific): peers send the same few spellings, one dict probe replaces lower() and set tests.
_PLAIN_NAMES: dict[bytes, bytes] = {}
_PLAIN_NAMES_MAX = 4096  # bounded: names are peer-controlled


def _clean(headers: Iterable[tuple[bytes, bytes]], keep_te: bool = False) -> list[tuple[bytes, bytes]]:
    headers = headers if isinstance(headers, list) else list(headers)
    plain = _PLAIN_NAMES
    out = []
    for name, value in headers:
        low = plain.get(name)
        if low is None:
            low = name.lower()
            if low in CONNECTION_SPECIFIC or low[:1] == b":":
                return _clean_general(headers, keep_te)  # and a Connection header may name others
            if len(name) <= 64:
                if len(plain) >= _PLAIN_NAMES_MAX:
                    plain.clear()
                plain[name] = low
        if b"\n" in value or b"\r" in value or b"\x00" in value:
            continue  # h2's outbound validation is off: never frame a field a peer could split
        out.append((low, value))
    return out


def _clean_general(headers: list[tuple[bytes, bytes]], keep_te: bool) -> list[tuple[bytes, bytes]]:
    pairs = [(name.lower(), value) for name, value in headers]
    named = _named(pairs)
    out = []
    for low, value in pairs:
        if low in CONNECTION_SPECIFIC or low[:1] == b":" or low in named:
            if keep_te and low == b"te" and value.strip().lower() == b"trailers":
                out.append((b"te", b"trailers"))
            continue
        if b"\n" in value or b"\r" in value or b"\x00" in value:
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
