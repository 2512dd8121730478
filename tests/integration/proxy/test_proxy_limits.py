"""HTTP/1.1 limits against hostile clients: header section size and count on every read pattern,
idle (not total) body timeouts, and pipelining that never reads its responses."""
from __future__ import annotations

import socket
import time

import pytest

from tests.integration.proxy.proxy_for_test import (
    Origin, WorkerProcess, pass_through_snapshot_for_test, raw_request_for_test,
)


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def worker(origin, tmp_path_factory):
    # 1 KiB per field, 4 KiB per head, 20 fields; body idle timeout 1 s.
    snap = pass_through_snapshot_for_test(port=origin.port)
    w = WorkerProcess(snap, tmp_path_factory.mktemp("limits"), env={
        "MESHWAY_LARGE_CLIENT_HEADER_BUFFERS": "1024", "MESHWAY_MAX_REQUEST_HEADERS": "20",
        "MESHWAY_CLIENT_BODY_TIMEOUT": "1"})
    yield w
    w.stop()


def _head(fields: int, size: int) -> bytes:
    lines = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * size) for i in range(fields))
    return b"GET /limits HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"


def _sent_in_pieces(port: int, data: bytes, piece: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        for i in range(0, len(data), piece):
            try:
                s.sendall(data[i:i + piece])
            except OSError:
                break
            time.sleep(0.01)
        out = bytearray()
        try:
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
        return bytes(out)


@pytest.mark.parametrize("pieces", ["one-read", "many-reads"])
def test_head_over_the_section_limit_is_431_however_it_arrives(worker, origin, pieces):
    # 10 fields of 500 bytes: each under the 1 KiB field limit and the 20-field limit, 5 KiB in all.
    head = _head(10, 500)
    before = len(origin.requests)
    raw = raw_request_for_test(worker.port, head) if pieces == "one-read" else \
        _sent_in_pieces(worker.port, head, 700)
    assert raw.startswith(b"HTTP/1.1 431 "), raw[:100]
    assert len(origin.requests) == before
    assert worker.alive()


def test_head_under_the_limits_is_forwarded(worker, origin):
    raw = raw_request_for_test(worker.port, _head(6, 400).replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"))
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:100]


def test_too_many_header_fields_is_431(worker, origin):
    before = len(origin.requests)
    raw = raw_request_for_test(worker.port, _head(25, 1))
    assert raw.startswith(b"HTTP/1.1 431 "), raw[:100]
    assert b"too large" in raw.lower()
    assert len(origin.requests) == before


def test_chunked_trailers_count_against_the_head_section(worker, origin):
    head = b"POST /limits HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"t" * 600) for i in range(10)) + b"\r\n"
    raw = raw_request_for_test(worker.port, head + trailers)
    assert raw.startswith(b"HTTP/1.1 431 "), raw[:100]
    assert worker.alive()


def _upload(port: int, pieces: int, gap: float) -> bytes:
    body = b"x" * 10
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                  % (len(body) * pieces))
        for _ in range(pieces):
            time.sleep(gap)
            try:
                s.sendall(body)
            except OSError:
                break
        out = bytearray()
        try:
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
        return bytes(out)


def test_slow_upload_that_keeps_sending_outlives_the_body_timeout(worker):
    # 8 pieces 0.35 s apart: 2.8 s in all, well past the 1 s timeout; no gap reaches it.
    raw = _upload(worker.port, 8, 0.35)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
    assert b'"body_len": 80' in raw


def test_upload_with_a_gap_over_the_body_timeout_gets_408(worker):
    raw = _upload(worker.port, 2, 1.6)
    assert raw.startswith(b"HTTP/1.1 408 "), raw[:200]


def test_pipelining_client_that_never_reads_does_not_grow_the_worker(worker, origin):
    from tests.integration.http2.h2_for_test import rss_kib_for_test

    n = 600  # 600 answers of 64 KiB: 39 MiB if the worker buffered them all
    before = len(origin.requests)
    with socket.create_connection(("127.0.0.1", worker.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        rss_before = rss_kib_for_test(worker.proc.pid)
        s.sendall(b"GET /big/65536 HTTP/1.1\r\nHost: x\r\n\r\n" * n)
        time.sleep(2.0)
        served, grown = len(origin.requests) - before, rss_kib_for_test(worker.proc.pid) - rss_before
        assert served < n // 3, f"{served} of {n} pipelined requests went upstream while the client read nothing"
        assert grown < 16 * 1024, f"worker RSS grew {grown} KiB"
        got, want = 0, n * (65536 + 60)
        s.settimeout(5)
        while got < want and (chunk := s.recv(1 << 20)):  # and once it reads, every answer comes
            got += len(chunk)
        deadline = time.monotonic() + 5
        while len(origin.requests) - before < n and time.monotonic() < deadline:
            s.recv(1 << 20)
    assert len(origin.requests) - before == n


def test_slow_readers_hold_a_bounded_amount_of_worker_memory(origin, tmp_path_factory):
    # 100 clients ask for 16 MiB each and read nothing: the worker keeps at most one upstream read
    # (64 KiB) and the client transport's high-water mark (64 KiB) per client; it used to keep a
    # 256 KiB read (35 MiB for 100). The rest waits upstream, under TCP flow control.
    from tests.integration.http2.h2_for_test import rss_kib_for_test

    w = WorkerProcess(pass_through_snapshot_for_test(port=origin.port), tmp_path_factory.mktemp("slowreaders"))
    readers = []
    try:
        raw_request_for_test(w.port, b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        before = rss_kib_for_test(w.proc.pid)
        for _ in range(100):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", w.port))
            s.sendall(b"GET /big/16777216 HTTP/1.1\r\nHost: x\r\n\r\n")
            readers.append(s)
        grown, last = 0, -1
        for _ in range(20):  # until it stops growing
            time.sleep(0.5)
            grown = rss_kib_for_test(w.proc.pid) - before
            if abs(grown - last) < 256:
                break
            last = grown
        assert grown < 20 * 1024, f"100 slow readers took {grown} KiB of worker memory"
        assert raw_request_for_test(w.port, b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") \
            .startswith(b"HTTP/1.1 200 ")
    finally:
        for s in readers:
            s.close()
        w.stop()
