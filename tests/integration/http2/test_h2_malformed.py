"""Bad HTTP/2 input: GOAWAY or RST_STREAM, nothing reaches the upstream, the worker keeps serving."""
from __future__ import annotations

import socket
import ssl
import time

import h2.errors
import h2.events
import httpx
import pytest

from tests.integration.http2.h2_for_test import H2Worker, RawH2ForTest, goaway_in_for_test
from tests.integration.proxy.proxy_for_test import Origin, pass_through_snapshot_for_test, raw_request_for_test

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def worker(origin, tmp_path_factory):
    snap = pass_through_snapshot_for_test(port=origin.port)
    w = H2Worker(snap, tmp_path_factory.mktemp("h2bad"), env={"MESHWAY_KEEPALIVE_TIMEOUT": "1",
                                                              "MESHWAY_CLIENT_HEADER_TIMEOUT": "1"})
    yield w
    w.stop()


@pytest.fixture
def still_serving(worker, origin):
    before = len(origin.requests)
    yield before
    assert worker.alive()
    with httpx.Client(http1=False, http2=True) as c:
        assert c.get(f"http://127.0.0.1:{worker.plain}/after").status_code == 200


def _tls_raw(port: int, data: bytes, wait: float = 10.0) -> tuple[bytes, float | None]:
    """Send `data` on an h2 TLS connection; what the server sent until it closed, and how long after
    the handshake it closed (None: still open when `wait` ran out)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "h2"
            handshaken = time.monotonic()
            s.sendall(data)
            out = bytearray()
            try:
                while chunk := s.recv(65536):
                    out += chunk
            except socket.timeout:
                return bytes(out), None
            except (ConnectionError, ssl.SSLError):
                pass
            return bytes(out), time.monotonic() - handshaken


def test_bad_preface_after_pri_gets_goaway_protocol_error(worker, origin, still_serving):
    raw = raw_request_for_test(worker.plain, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\x00" * 64)
    assert goaway_in_for_test(raw) == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert len(origin.requests) == still_serving


def test_http1_bytes_on_an_alpn_h2_connection_get_goaway(worker, origin, still_serving):
    raw, _ = _tls_raw(worker.tls, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert goaway_in_for_test(raw) == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert len(origin.requests) == still_serving


def test_data_on_stream_zero_gets_goaway(worker, still_serving):
    raw = raw_request_for_test(worker.plain, PREFACE + EMPTY_SETTINGS + b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    assert goaway_in_for_test(raw) == h2.errors.ErrorCodes.PROTOCOL_ERROR


@pytest.mark.parametrize("bad", [[(b"connection", b"close")], [(b"X-Upper", b"1")], [(b"x-a", b"a\r\nb: c")],
                                 [(b"te", b"gzip")], [(b"x-a", b" padded")]])
def test_malformed_request_is_reset_and_the_connection_goes_on(worker, origin, still_serving, bad):
    c = RawH2ForTest(worker.plain)
    sid = c.request("/malformed", bad)
    c.response(sid)
    resets = [e for e in c.events if isinstance(e, h2.events.StreamReset) and e.stream_id == sid]
    assert [e.error_code for e in resets] == [h2.errors.ErrorCodes.PROTOCOL_ERROR]
    sid2 = c.request("/fine")
    headers, _ = c.response(sid2)
    c.close()
    assert headers[":status"] == "200"
    assert [r["url"] for r in origin.requests[still_serving:]] == ["/fine"]


def _headers_frames(block: bytes, sid: int = 1, size: int = 16384) -> bytes:
    out, first = bytearray(), True
    for pos in range(0, len(block), size):
        part = block[pos:pos + size]
        kind = 0x1 if first else 0x9
        flags = (0x4 if pos + size >= len(block) else 0) | (0x1 if first else 0)  # END_HEADERS, END_STREAM
        out += len(part).to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + part
        first = False
    return bytes(out)


def test_header_list_over_the_limit_is_refused(worker, origin, still_serving):
    import hpack

    block = hpack.Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
                                    (b":path", b"/big-head"), (b"x-big", b"v" * 60_000)], huffman=False)
    raw = raw_request_for_test(worker.plain, PREFACE + EMPTY_SETTINGS + _headers_frames(block))
    assert goaway_in_for_test(raw) == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert len(origin.requests) == still_serving


def test_rapid_reset_flood_is_cut_with_enhance_your_calm(worker, still_serving):
    c = RawH2ForTest(worker.plain)
    code = None
    for _ in range(1200):
        try:
            sid = c.request("/sleep/5")
            c.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            c.send()
        except (BrokenPipeError, ConnectionResetError):
            break
    code = c.goaway_code(deadline=5)
    c.close()
    assert code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_idle_connection_gets_goaway_no_error(worker):
    c = RawH2ForTest(worker.plain)
    sid = c.request("/idle")
    headers, _ = c.response(sid)
    assert headers[":status"] == "200"
    started = time.monotonic()
    code = c.goaway_code(deadline=10)  # far below any other timeout that could close it (60 s)
    c.close()
    assert code == h2.errors.ErrorCodes.NO_ERROR
    assert time.monotonic() - started > 0.5  # keepalive_timeout is 1 s here


def test_silent_tls_h2_connection_is_closed_after_the_header_timeout(worker):
    # Timed from the end of the handshake (which a loaded machine can make long). The GOAWAY comes at
    # the header timeout, the close 2 s later (the lingering close: a TLS transport cannot half-close),
    # so the wait is well above that and far below any other timeout that could close it (60 s).
    raw, closed_after = _tls_raw(worker.tls, b"", wait=10)
    assert closed_after is not None, "the silent connection was still open after 10 s"
    assert closed_after > 0.5  # client_header_timeout is 1 s here
    assert goaway_in_for_test(raw) == h2.errors.ErrorCodes.PROTOCOL_ERROR


def test_client_reset_mid_response_leaves_the_connection_usable(worker):
    c = RawH2ForTest(worker.plain)
    sid = c.request("/sleep/0.3")
    c.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    c.send()
    sid2 = c.request("/second")
    headers, body = c.response(sid2)
    c.close()
    assert headers[":status"] == "200"
    assert b'"url": "/second"' in body
    assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in c.events)
