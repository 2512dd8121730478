"""HTTP/2 header blocks <-> pipeline header lists, without sockets."""
from __future__ import annotations

import pytest

from meshway.proxy.http2 import is_preface
from meshway.proxy.http2._headers import decode_request, encode_response, encode_upstream_request


def test_decode_request_joins_cookies_and_takes_authority_as_host():
    head = decode_request([(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"api.test:8443"),
                           (b":path", b"/a?b=1"), (b"cookie", b"a=1"), (b"content-type", b"application/grpc"),
                           (b"cookie", b"b=2"), (b"content-length", b"12"), (b"te", b"trailers"),
                           (b"user-agent", b"ua/1")])
    assert (head.method, head.scheme, head.authority, head.url) == ("POST", "https", "api.test:8443", b"/a?b=1")
    assert head.content_length == 12 and head.te_trailers and head.content_type == b"application/grpc"
    assert (b"cookie", b"a=1; b=2") in head.headers
    assert [k for k, _ in head.headers].count(b"cookie") == 1
    assert head.ua == b"ua/1"


def test_decode_request_falls_back_to_host_and_refuses_connect():
    block = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"h.test")]
    assert decode_request(block).authority == "h.test"
    with pytest.raises(ValueError):
        decode_request([(b":method", b"CONNECT"), (b":authority", b"h:443")])


def test_encode_response_drops_connection_specific_fields():
    block = encode_response(200, [(b"Content-Type", b"text/plain"), (b"Connection", b"x-hop"), (b"X-Hop", b"1"),
                                  (b"Keep-Alive", b"5"), (b"Transfer-Encoding", b"chunked"), (b"Upgrade", b"h2c"),
                                  (b"Proxy-Connection", b"x"), (b"X-Keep", b"k")],
                            [(b"Via", b"1.1 meshway/0")], b"5")
    assert block == [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-keep", b"k"),
                     (b"via", b"1.1 meshway/0"), (b"content-length", b"5")]


def test_encode_upstream_request_puts_pseudo_headers_first_and_keeps_te_trailers_for_grpc():
    block = encode_upstream_request("POST", "http", b"/svc/M", [(b"Host", b"up:50051"), (b"TE", b"trailers"),
                                                                (b"X-Forwarded-For", b"1.2.3.4")], 7, True)
    assert block[:4] == [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"up:50051"),
                         (b":path", b"/svc/M")]
    assert (b"host", b"up:50051") not in block
    assert (b"x-forwarded-for", b"1.2.3.4") in block
    assert block[-2:] == [(b"te", b"trailers"), (b"content-length", b"7")]


@pytest.mark.parametrize("data,expected", [
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", True), (b"PRI * HTTP/2.0\r\n\r\nXX", True), (b"PRI", True),
    (b"PRI * HTTP/1.1\r\n", False), (b"GET / HTTP/1.1\r\n", False), (b"PR", False), (b"", False),
])
def test_is_preface(data, expected):
    assert is_preface(data) is expected


from meshway.proxy.http2._headers import Malformed, check_trailers  # noqa: E402

_BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")]


@pytest.mark.parametrize("block", [
    [*_BASE, (b"Upper", b"x")],
    [*_BASE, (b"x-a", b"1\r\nx-b: 2")],
    [*_BASE, (b"x-a", b"nul\x00")],
    [*_BASE, (b"x-a", b" lead")],
    [*_BASE, (b"connection", b"keep-alive")],
    [*_BASE, (b"transfer-encoding", b"chunked")],
    [*_BASE, (b"te", b"gzip")],
    [*_BASE, (b"content-length", b"1x")],
    [*_BASE, (b"content-length", b"1"), (b"content-length", b"2")],
    [(b":method", b"GET"), (b":path", b"/")],
    [*_BASE, (b":method", b"POST")],
    [*_BASE, (b":status", b"200")],
    [(b":method", b"GET"), (b"x-a", b"1"), (b":scheme", b"https"), (b":path", b"/")],
    [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"")],
    [*_BASE, (b"bad name", b"1")],
])
def test_malformed_request_blocks(block):
    with pytest.raises(Malformed):
        decode_request(block)


def test_trailers_with_pseudo_headers_are_malformed():
    assert check_trailers([(b"grpc-status", b"0")]) == [(b"grpc-status", b"0")]
    with pytest.raises(Malformed):
        check_trailers([(b":status", b"200")])
