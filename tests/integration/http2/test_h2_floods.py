"""HTTP/2 floods: hand-built frames over a socket. Each flood ends in GOAWAY ENHANCE_YOUR_CALM
after a bounded number of answers, one log line names the client and the limit, and another
client of the same worker is served meanwhile."""
from __future__ import annotations

import socket
import time

import h2.errors
import h2.events
import httpx
import pytest

from tests.integration.http2.h2_for_test import H2Worker, RawH2ForTest, rss_kib_for_test
from tests.integration.proxy.proxy_for_test import Origin, pass_through_snapshot_for_test

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LIMIT = 100  # http2_max_control_frames in these workers


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + payload


SETTINGS = frame(0x4, 0, 0)
PING = frame(0x6, 0, 0, b"12345678")


def frames_in(raw: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of each whole frame in server bytes."""
    out, pos = [], 0
    while pos + 9 <= len(raw):
        length = int.from_bytes(raw[pos:pos + 3], "big")
        if pos + 9 + length > len(raw):
            break
        out.append((raw[pos + 3], raw[pos + 4], int.from_bytes(raw[pos + 5:pos + 9], "big") & 0x7FFFFFFF,
                    raw[pos + 9:pos + 9 + length]))
        pos += 9 + length
    return out


def goaway(frames: list) -> tuple[int, int] | None:
    """(last stream id, error code) of the first GOAWAY."""
    for kind, _, _, payload in frames:
        if kind == 0x7:
            return int.from_bytes(payload[:4], "big"), int.from_bytes(payload[4:8], "big")
    return None


def flood_for_test(port: int, data: bytes, wait: float = 5.0) -> list:
    """Send the preface, our SETTINGS and `data`; read everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        try:
            s.sendall(PREFACE + SETTINGS + data)
        except OSError:
            pass
        out = bytearray()
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline and (chunk := s.recv(65536)):
                out += chunk
        except OSError:
            pass
    return frames_in(bytes(out))


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def worker(origin, tmp_path_factory):
    snap = pass_through_snapshot_for_test(port=origin.port)
    w = H2Worker(snap, tmp_path_factory.mktemp("h2flood"), env={
        "MESHWAY_HTTP2_MAX_CONTROL_FRAMES": str(LIMIT), "MESHWAY_HTTP2_MAX_REQUESTS": "5"})
    yield w
    w.stop()


@pytest.fixture
def still_serving(worker):
    yield
    assert worker.alive()
    with httpx.Client(http1=False, http2=True) as c:
        assert c.get(f"http://127.0.0.1:{worker.plain}/after").status_code == 200


def _calm(frames: list) -> None:
    assert goaway(frames) is not None and goaway(frames)[1] == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, frames[-3:]


@pytest.mark.parametrize("kind", ["PING", "SETTINGS", "PRIORITY"])
def test_control_frame_flood_is_answered_a_bounded_number_of_times(worker, still_serving, kind):
    one = {"PING": PING, "SETTINGS": SETTINGS, "PRIORITY": frame(0x2, 0, 3, b"\x00\x00\x00\x01\x10")}[kind]
    frames = flood_for_test(worker.plain, one * 20_000)
    _calm(frames)
    acks = [f for f in frames if f[0] in (0x4, 0x6) and f[1] & 0x1]
    assert len(acks) <= 2 * LIMIT + 1  # one window's worth, at most two windows across its edge
    assert "http2_max_control_frames" in worker.error_log()
    assert "127.0.0.1" in [line for line in worker.error_log().splitlines() if "http2_max_control_frames" in line][-1]


def test_window_update_flood_is_cut(worker, still_serving):
    frames = flood_for_test(worker.plain, frame(0x8, 0, 0, (1).to_bytes(4, "big")) * 20_000)
    _calm(frames)
    assert "http2_max_window_updates_per_data_frame" in worker.error_log()


def test_empty_data_frame_flood_is_cut(worker, origin, still_serving):
    c = RawH2ForTest(worker.plain)
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"localhost"),
                            (b":path", b"/upload")])
    c.send()
    c.sock.sendall(frame(0x0, 0, sid) * 1000)
    assert c.goaway_code() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    c.close()
    assert "http2_max_empty_frames" in worker.error_log()


def test_continuation_flood_is_cut(worker, origin, still_serving):
    import hpack

    block = hpack.Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
                                    (b":path", b"/cont")])
    data = frame(0x1, 0x1, 1, block) + frame(0x9, 0, 1, b"") * 10_000  # never END_HEADERS
    before = len(origin.requests)
    frames = flood_for_test(worker.plain, data)
    assert goaway(frames) is not None and goaway(frames)[1] != h2.errors.ErrorCodes.NO_ERROR
    assert len(origin.requests) == before


def test_a_connection_serves_http2_max_requests_streams_then_goaway(worker, still_serving):
    import hpack

    enc = hpack.Encoder()
    data = b"".join(frame(0x1, 0x5, sid, enc.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                                     (b":authority", b"localhost"), (b":path", b"/budget")]))
                    for sid in (1, 3, 5, 7, 9, 11))
    frames = flood_for_test(worker.plain, data)
    assert goaway(frames) == (9, h2.errors.ErrorCodes.NO_ERROR)
    answered = sorted({sid for kind, _, sid, _ in frames if kind == 0x1})
    assert answered == [1, 3, 5, 7, 9]
    refused = [(sid, int.from_bytes(p, "big")) for kind, _, sid, p in frames if kind == 0x3]
    assert refused == [(11, h2.errors.ErrorCodes.REFUSED_STREAM)]


def test_a_client_that_does_not_read_is_not_read_from(origin, tmp_path_factory):
    # The control-frame limit out of the way: what bounds the worker is that it stops reading.
    snap = pass_through_snapshot_for_test(port=origin.port)
    w = H2Worker(snap, tmp_path_factory.mktemp("h2noread"), env={"MESHWAY_HTTP2_MAX_CONTROL_FRAMES": "100000000"})
    try:
        with socket.create_connection(("127.0.0.1", w.plain), timeout=30) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(PREFACE + SETTINGS)
            assert frames_in(s.recv(65536))[0][0] == 0x4  # the worker's SETTINGS: its HTTP/2 side is up
            rss_before = rss_kib_for_test(w.proc.proc.pid)
            chunk = PING * 4096  # 68 KiB
            sent, goal = 0, 64 << 20
            s.settimeout(1.0)
            deadline = time.monotonic() + 60  # only ends a flood the worker never stops reading
            while sent < goal and time.monotonic() < deadline:
                cpu = _cpu_ticks(w.proc.proc.pid)
                try:
                    sent += s.send(chunk)
                except socket.timeout:
                    # our send buffer stayed full for a second: the worker stopped reading us, unless
                    # it was only slow (a loaded machine), in which case it worked meanwhile
                    if _cpu_ticks(w.proc.proc.pid) - cpu < 5:  # under 50 ms of CPU in that second: idle
                        break
            grown = rss_kib_for_test(w.proc.proc.pid) - rss_before
            with httpx.Client(http1=False, http2=True) as other:  # served meanwhile
                assert other.get(f"http://127.0.0.1:{w.plain}/other").status_code == 200
        assert sent < 24 << 20, f"the worker read {sent >> 20} MiB of PINGs from a client that reads nothing"
        assert grown < 32 * 1024, f"worker RSS grew {grown} KiB"
    finally:
        w.stop()


def _cpu_ticks(pid: int) -> int:
    """The process's user + system CPU time, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_header_and_trailer_field_counts_are_limited(origin, tmp_path_factory):
    snap = pass_through_snapshot_for_test(port=origin.port)
    w = H2Worker(snap, tmp_path_factory.mktemp("h2count"), env={"MESHWAY_MAX_REQUEST_HEADERS": "20"})
    many = [(b"x-f%d" % i, b"v") for i in range(25)]
    try:
        before = len(origin.requests)
        c = RawH2ForTest(w.plain)
        headers, _ = c.response(c.request("/few", headers=many[:20]))
        assert headers[":status"] == "200"
        c.request("/many", headers=many)
        assert c.goaway_code() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        c.close()
        c = RawH2ForTest(w.plain)
        sid = c.h2.get_next_available_stream_id()
        c.h2.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"localhost"),
                                (b":path", b"/trailers")])
        c.h2.send_data(sid, b"body")
        c.h2.send_headers(sid, many, end_stream=True)
        c.send()
        assert c.goaway_code() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        c.close()
        assert not any(r["url"] in ("/many", "/trailers") for r in origin.requests[before:])
        assert "max_request_headers" in w.error_log()
    finally:
        w.stop()
