"""PROXY protocol headers, v1 and v2, whole, partial and hostile."""
from __future__ import annotations

import socket
import struct

import pytest

from meshway.proxy.stream._proxyproto import V2_SIGNATURE, ProxyHeaderError, parse_proxy_header


def v2_for_test(command: int = 1, family: int = 0x11, body: bytes | None = None) -> bytes:
    if body is None:
        body = socket.inet_aton("10.9.9.9") + socket.inet_aton("127.0.0.5") + struct.pack("!HH", 5555, 19000)
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def test_v1_tcp4_header_and_what_follows():
    data = b"PROXY TCP4 10.9.9.9 127.0.0.5 5555 19000\r\nhello"
    header = parse_proxy_header(data)
    assert header.source == ("10.9.9.9", 5555) and header.destination == ("127.0.0.5", 19000)
    assert data[header.length:] == b"hello"


def test_v1_tcp6_and_unknown():
    assert parse_proxy_header(b"PROXY TCP6 fd00::1 fd00::2 1 2\r\n").source == ("fd00::1", 1)
    unknown = parse_proxy_header(b"PROXY UNKNOWN whatever\r\n")
    assert unknown.source is None and unknown.length == 24


def test_v2_proxy_local_and_ipv6():
    header = parse_proxy_header(v2_for_test() + b"rest")
    assert header.source == ("10.9.9.9", 5555) and header.destination == ("127.0.0.5", 19000)
    assert header.length == 28
    assert parse_proxy_header(v2_for_test(command=0)).source is None
    six = socket.inet_pton(socket.AF_INET6, "fd00::1") + socket.inet_pton(socket.AF_INET6, "fd00::2") + b"\x00\x01\x00\x02"
    assert parse_proxy_header(v2_for_test(family=0x21, body=six)).destination == ("fd00::2", 2)


@pytest.mark.parametrize("whole", [b"PROXY TCP4 10.9.9.9 127.0.0.5 5555 19000\r\n", v2_for_test()])
def test_every_prefix_asks_for_more(whole):
    for cut in range(len(whole)):
        assert parse_proxy_header(whole[:cut]) is None, cut


@pytest.mark.parametrize("bad", [
    b"GET / HTTP/1.1\r\n", b"PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n", b"PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n",
    b"PROXY " + b"x" * 120, b"PROXY TCP4 1.2.3.4\r\n", b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x00",
    v2_for_test(body=b"\x00" * 5),
])
def test_invalid_headers_are_refused(bad):
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(bad)
