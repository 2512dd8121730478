"""ClientHello parsing: real hellos from OpenSSL, cut and mangled the ways a network does."""
from __future__ import annotations

import random
import ssl

import pytest

from meshway.proxy.stream import HelloStatus, parse_client_hello


def client_hello_for_test(server_name: str | None = "service.test") -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def as_records_for_test(hello: bytes, size: int) -> bytes:
    """Re-frame the handshake message into records of at most `size` bytes."""
    body = hello[5:]
    out = b""
    for i in range(0, len(body), size):
        chunk = body[i:i + size]
        out += b"\x16\x03\x01" + len(chunk).to_bytes(2, "big") + chunk
    return out


def test_sni_of_a_real_hello():
    seen = parse_client_hello(client_hello_for_test("Service.Test."))
    assert seen.status is HelloStatus.TLS
    assert seen.sni == "service.test"


def test_hello_without_sni_is_tls_without_name():
    seen = parse_client_hello(client_hello_for_test(None))
    assert (seen.status, seen.sni) == (HelloStatus.TLS, None)


def test_every_prefix_of_a_hello_asks_for_more():
    hello = client_hello_for_test()
    for cut in range(0, len(hello)):
        assert parse_client_hello(hello[:cut]).status is HelloStatus.NEED_MORE, cut
    assert parse_client_hello(hello).sni == "service.test"


@pytest.mark.parametrize("size", [1, 7, 100])
def test_hello_split_over_several_records(size):
    framed = as_records_for_test(client_hello_for_test(), size)
    assert parse_client_hello(framed).sni == "service.test"
    assert parse_client_hello(framed[:-1]).status is HelloStatus.NEED_MORE


@pytest.mark.parametrize("first", [b"G", b"GET / HTTP/1.1\r\n", b"\x00", b"SSH-2.0-OpenSSH", b"\x16\x02"])
def test_plain_clients_are_told_apart_at_once(first):
    assert parse_client_hello(first).status is HelloStatus.NOT_TLS


def test_handshake_record_that_is_not_a_client_hello_counts_as_tls_without_sni():
    server_hello = b"\x16\x03\x03\x00\x06" + b"\x02\x00\x00\x02\x03\x03"
    seen = parse_client_hello(server_hello)
    assert (seen.status, seen.sni) == (HelloStatus.TLS, None)


def test_truncated_inner_lengths_never_raise():
    hello = bytearray(client_hello_for_test())
    hello[5 + 4 + 34] = 0xFF  # session id length pointing past the end
    seen = parse_client_hello(bytes(hello))
    assert (seen.status, seen.sni) == (HelloStatus.TLS, None)


def test_non_ascii_server_name_gives_no_sni():
    hello = client_hello_for_test("abcd.test")
    mangled = hello.replace(b"abcd", b"\xff\xfe\xfd\xfc")
    assert parse_client_hello(mangled).sni is None


def test_random_garbage_after_a_tls_header_never_raises():
    rng = random.Random(5)
    for _ in range(2000):
        junk = b"\x16\x03" + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        assert parse_client_hello(junk).status in (HelloStatus.TLS, HelloStatus.NEED_MORE)


def test_oversized_hello_stops_waiting():
    header = b"\x16\x03\x01\xff\xff" + b"\x01\xff\xff\xff"
    big = header + b"\x00" * (70 * 1024)
    assert parse_client_hello(big).status is HelloStatus.TLS
