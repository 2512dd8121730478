"""gRPC answers the proxy makes itself (Kong's mapping), without sockets."""
from __future__ import annotations

import pytest

from meshway.proxy.http2 import grpc_error_headers, grpc_status_for, is_grpc


@pytest.mark.parametrize("ctype,expected", [
    (b"application/grpc", True), (b"application/grpc+proto", True), (b"Application/GRPC", True),
    (b"application/json", False), (None, False), (b"application/grp", False),
])
def test_is_grpc(ctype, expected):
    assert is_grpc(ctype) is expected


@pytest.mark.parametrize("http,code", [
    (200, 0), (400, 3), (401, 16), (403, 7), (404, 5), (409, 6), (429, 8), (499, 1), (500, 13), (501, 12),
    (503, 14), (504, 4), (502, 13), (426, 3), (415, 3), (204, 0), (302, 2),
])
def test_http_to_grpc_status_as_kong(http, code):
    assert grpc_status_for(http) == code


def test_error_headers_are_trailers_only_with_the_json_message():
    out = grpc_error_headers(404, b'{"message":"no Route matched with those values"}')
    assert out[0] == (b":status", b"404")
    h = dict(out)
    assert h[b"content-type"] == b"application/grpc"
    assert h[b"grpc-status"] == b"5"
    assert h[b"grpc-message"] == b"no Route matched with those values"
    assert h[b"content-length"] == b"0"


def test_error_headers_keep_a_plugin_status_and_encode_the_message():
    out = dict(grpc_error_headers(403, b"", [(b"X-Extra", b"1"), (b"grpc-status", b"16")]))
    assert out[b"grpc-status"] == b"16"
    assert out[b"grpc-message"] == b"Unauthenticated"
    assert out[b"x-extra"] == b"1"
    assert dict(grpc_error_headers(500, "caf\u00e9 100%".encode()))[b"grpc-message"] == b"caf%C3%A9 100%25"
