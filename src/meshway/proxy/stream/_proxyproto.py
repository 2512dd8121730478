"""The PROXY protocol header (HAProxy's spec, v1 text and v2 binary) on `proxy_protocol` listeners.

Rules:
- The header is the very first thing on the connection; a listener with the flag refuses a
  connection whose first bytes are not a valid header (no guessing).
- v1: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\\r\\n` or `PROXY UNKNOWN...\\r\\n`, at most
  107 bytes. v2: a 12-byte signature, version/command, family, length, then addresses.
- `LOCAL` (v2) and `UNKNOWN` (v1) headers carry no addresses: the socket's own are kept.
- Parsing is pure and total: NEED_MORE until the header is complete, else a `ProxyHeader`,
  else `ProxyHeaderError` with the reason.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import socket
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_MAX = 107
_V2_FIXED = 16
_V2_V4 = struct.Struct("!4s4sHH")
_V2_V6 = struct.Struct("!16s16sHH")


class ProxyHeaderError(ValueError):
    """The first bytes are not a valid PROXY protocol header."""


@dataclasses.dataclass(frozen=True)
class ProxyHeader:
    """The addresses a PROXY header gave (None for LOCAL/UNKNOWN) and its length in bytes."""

    length: int
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


NEED_MORE = None


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """A complete header, None while more bytes are needed; ProxyHeaderError when invalid."""
    if data[:1] == b"P":
        return _v1(data)
    if data[:1] == b"\r":
        return _v2(data)
    if data:
        raise ProxyHeaderError("no PROXY protocol header")
    return NEED_MORE


def _v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, _V1_MAX)
    if end < 0:
        if len(data) >= _V1_MAX or not (data.startswith(b"PROXY ") or b"PROXY ".startswith(data)):
            raise ProxyHeaderError("PROXY v1 header too long or malformed")
        return NEED_MORE
    words = data[:end].decode("ascii", "replace").split(" ")
    if words[0] != "PROXY" or len(words) < 2:
        raise ProxyHeaderError("malformed PROXY v1 header")
    if words[1] == "UNKNOWN":
        return ProxyHeader(end + 2)
    if words[1] not in ("TCP4", "TCP6") or len(words) != 6:
        raise ProxyHeaderError(f"unsupported PROXY v1 header {words[1]!r}")
    return ProxyHeader(end + 2, _endpoint(words[2], words[4]), _endpoint(words[3], words[5]))


def _endpoint(ip: str, port: str) -> tuple[str, int]:
    try:
        address, number = str(ipaddress.ip_address(ip)), int(port)
    except ValueError:
        raise ProxyHeaderError(f"bad address {ip}:{port} in PROXY header") from None
    if not 0 <= number <= 65535 or not port.isdigit():
        raise ProxyHeaderError(f"bad port {port!r} in PROXY header")
    return address, number


def _v2(data: bytes) -> ProxyHeader | None:
    if len(data) < _V2_FIXED:
        if not V2_SIGNATURE.startswith(data[:12]):
            raise ProxyHeaderError("no PROXY protocol header")
        return NEED_MORE
    if data[:12] != V2_SIGNATURE or data[12] >> 4 != 2:
        raise ProxyHeaderError("bad PROXY v2 signature or version")
    length = _V2_FIXED + int.from_bytes(data[14:16], "big")
    if len(data) < length:
        return NEED_MORE
    if data[12] & 0x0F == 0:  # LOCAL: a health check from the balancer itself
        return ProxyHeader(length)
    return _v2_addresses(data[13], data[_V2_FIXED:length], length)


def _v2_addresses(family: int, body: bytes, length: int) -> ProxyHeader:
    kinds = {0x11: (_V2_V4, socket.AF_INET), 0x21: (_V2_V6, socket.AF_INET6)}
    if family not in kinds:
        return ProxyHeader(length)  # UNSPEC or UNIX: keep the socket's addresses
    layout, af = kinds[family]
    if len(body) < layout.size:
        raise ProxyHeaderError("PROXY v2 address block too short")
    src, dst, sport, dport = layout.unpack_from(body)
    return ProxyHeader(length, (socket.inet_ntop(af, src), sport), (socket.inet_ntop(af, dst), dport))
