"""Header policy between client and upstream, as pure functions."""
from __future__ import annotations

from meshway.proxy import Forwarded, downstream_response_headers, upstream_request_headers

FWD = Forwarded("10.0.0.5", "https", "api.test", 8443, "/p")


def names(headers):
    return [k.lower() for k, _ in headers]


def test_hop_by_hop_and_connection_named_headers_are_dropped():
    hdrs = [(b"Host", b"api.test"), (b"Connection", b"keep-alive, X-Secret"), (b"X-Secret", b"1"),
            (b"Keep-Alive", b"timeout=5"), (b"TE", b"trailers"), (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"h2c"), (b"Proxy-Authorization", b"x"), (b"X-App", b"ok"), (b"Content-Length", b"3")]
    out = upstream_request_headers(hdrs, b"up:8080", FWD)
    assert out[0] == (b"Host", b"up:8080")
    assert (b"X-App", b"ok") in out
    for gone in (b"connection", b"x-secret", b"keep-alive", b"te", b"transfer-encoding", b"upgrade",
                 b"proxy-authorization", b"content-length"):
        assert gone not in names(out)


def test_forwarded_headers_untrusted_client():
    hdrs = [(b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-Proto", b"gopher"), (b"X-Real-IP", b"6.6.6.6")]
    out = dict(upstream_request_headers(hdrs, b"h", FWD, via=b"1.1 meshway/x"))
    assert out[b"X-Forwarded-For"] == b"1.1.1.1, 10.0.0.5"
    assert out[b"X-Forwarded-Proto"] == b"https"
    assert out[b"X-Forwarded-Host"] == b"api.test"
    assert out[b"X-Forwarded-Port"] == b"8443"
    assert out[b"X-Forwarded-Path"] == b"/p"
    assert out[b"X-Real-IP"] == b"10.0.0.5"
    assert out[b"Via"] == b"1.1 meshway/x"


def test_forwarded_headers_from_trusted_client_are_kept():
    hdrs = [(b"X-Forwarded-Proto", b"http"), (b"X-Forwarded-Host", b"outer.test")]
    out = dict(upstream_request_headers(hdrs, b"h", FWD._replace(trusted=True)))
    assert out[b"X-Forwarded-Proto"] == b"http" and out[b"X-Forwarded-Host"] == b"outer.test"


def test_tunnel_keeps_upgrade():
    hdrs = [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]
    out = upstream_request_headers(hdrs, b"h", FWD, tunnel=True)
    assert (b"Upgrade", b"websocket") in out and (b"Connection", b"upgrade") in out


def test_response_headers():
    hdrs = [(b"Content-Type", b"text/plain"), (b"Connection", b"close, X-Hop"), (b"X-Hop", b"1"),
            (b"Transfer-Encoding", b"chunked"), (b"Proxy-Authenticate", b"x"), (b"Set-Cookie", b"a=1")]
    assert names(downstream_response_headers(hdrs)) == [b"content-type", b"set-cookie"]


def _parse(wire: bytes):
    return sorted(tuple(line.split(b": ", 1)) for line in wire.split(b"\r\n") if line)


def test_fast_encoders_apply_the_same_policy():
    from meshway.proxy._headers import (
        encode_request_headers, encode_response_headers, forwarded_dynamic, forwarded_fixed,
    )

    cases = [
        [(b"Host", b"a"), (b"User-Agent", b"x"), (b"X-Forwarded-For", b"9.9.9.9"), (b"Connection", b"keep-alive")],
        [(b"Host", b"a"), (b"Connection", b"close, X-Secret"), (b"X-Secret", b"s"), (b"Proxy-Foo", b"p")],
        [(b"Transfer-Encoding", b"chunked"), (b"TE", b"trailers"), (b"X-Real-IP", b"6.6.6.6")],
    ]
    fwd = FWD._replace(prefix="/pre")
    fixed = forwarded_fixed(fwd.client_ip, fwd.scheme, fwd.port)
    for hdrs in cases:
        slow = upstream_request_headers(hdrs, b"up", fwd, via=b"v")
        fast = encode_request_headers(hdrs, b"up", fwd.client_ip.encode(), fixed, forwarded_dynamic(fwd), via=b"v")
        if fast is None:  # a Connection header naming other headers: the general function applies
            assert any(k == b"Connection" and b"X-Secret" in v for k, v in hdrs)
            continue
        assert _parse(fast) == sorted(slow)
        slow_resp = downstream_response_headers(hdrs + [(b"Content-Length", b"3")])
        fast_resp, length = encode_response_headers(hdrs + [(b"Content-Length", b"3")])
        assert _parse(fast_resp) == sorted(slow_resp) and length == b"3"
