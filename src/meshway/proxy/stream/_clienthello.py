"""Reading the SNI out of a TLS ClientHello without consuming or terminating anything.

Rules (RFC 8446 5.1, 4.1.2; RFC 6066 3):
- A TLS client's first byte is 0x16 (handshake record) followed by major version 3. Anything
  else is not TLS: the decision is made on the first two bytes, so a plain-TCP client that
  sends a single byte is never kept waiting.
- The ClientHello may span several records; handshake fragments are joined in order.
- A record or hello that cannot be parsed still counts as TLS (it started like TLS) with no
  SNI: routing then picks a route that does not need one, and a terminating route's handshake
  fails with a logged reason. Parsing never raises and never reads past what it was given.
- The SNI is lowercased with one trailing dot removed (`Example.COM.` routes as `example.com`).
"""
from __future__ import annotations

import dataclasses
import enum

MAX_HELLO = 64 * 1024  # larger "hellos" are hostile; we stop buffering and route without SNI
_HANDSHAKE = 0x16
_CLIENT_HELLO = 1
_EXT_SNI = 0
_HOST_NAME = 0


class HelloStatus(enum.Enum):
    """What the first client bytes tell us so far."""

    NEED_MORE = "need_more"
    NOT_TLS = "not_tls"
    TLS = "tls"


@dataclasses.dataclass(frozen=True)
class Preread:
    """The verdict on the first client bytes: plain or TLS, and the SNI if TLS carried one."""

    status: HelloStatus
    sni: str | None = None


NEED_MORE = Preread(HelloStatus.NEED_MORE)
NOT_TLS = Preread(HelloStatus.NOT_TLS)
TLS_NO_SNI = Preread(HelloStatus.TLS)


class _Malformed(Exception):
    pass


def parse_client_hello(data: bytes) -> Preread:
    """Classify the first bytes a client sent; pure, total, bounded by `len(data)`."""
    if not data:
        return NEED_MORE
    if data[0] != _HANDSHAKE or (len(data) > 1 and data[1] != 3):
        return NOT_TLS
    hello = _join_handshake(data)
    if hello is None:
        return NEED_MORE if len(data) < MAX_HELLO + 5 else TLS_NO_SNI
    try:
        return Preread(HelloStatus.TLS, _sni_from_hello(hello))
    except _Malformed:
        return TLS_NO_SNI


def _join_handshake(data: bytes) -> bytes | None:
    """The complete ClientHello message (header included), or None while it is incomplete."""
    joined = bytearray()
    offset = 0
    while offset + 5 <= len(data):
        if data[offset] != _HANDSHAKE:
            return b"\x00"  # a non-handshake record mid-hello: malformed, let the parser say so
        length = int.from_bytes(data[offset + 3:offset + 5], "big")
        end = offset + 5 + length
        if end > len(data):
            return None
        joined += data[offset + 5:end]
        offset = end
        if len(joined) >= 4 and len(joined) >= 4 + int.from_bytes(joined[1:4], "big"):
            return bytes(joined)
        if length == 0:
            return b"\x00"
    return None


class _Cursor:
    """Bounds-checked reads over a byte string."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Malformed
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def number(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.number(length_bytes))


def _sni_from_hello(hello: bytes) -> str | None:
    if len(hello) < 4 or hello[0] != _CLIENT_HELLO:
        raise _Malformed
    body = _Cursor(hello[4:4 + int.from_bytes(hello[1:4], "big")])
    body.take(2 + 32)  # legacy_version, random
    body.vector(1)  # legacy_session_id
    body.vector(2)  # cipher_suites
    body.vector(1)  # legacy_compression_methods
    if body.pos == len(body.data):
        return None  # no extensions at all (TLS 1.0 era clients)
    extensions = _Cursor(body.vector(2))
    while extensions.pos < len(extensions.data):
        kind, payload = extensions.number(2), extensions.vector(2)
        if kind == _EXT_SNI:
            return _host_name(payload)
    return None


def _host_name(payload: bytes) -> str | None:
    names = _Cursor(_Cursor(payload).vector(2))
    while names.pos < len(names.data):
        kind, name = names.number(1), names.vector(2)
        if kind == _HOST_NAME:
            return normalize_sni(name)
    return None


def normalize_sni(raw: bytes | str) -> str | None:
    """Lowercase, without one trailing dot; None when it is not a printable ASCII name."""
    try:
        name = raw.decode("ascii") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        return None
    if not name or not name.isprintable() or not name.isascii():
        return None
    name = name.lower()
    return name[:-1] if len(name) > 1 and name.endswith(".") else name
