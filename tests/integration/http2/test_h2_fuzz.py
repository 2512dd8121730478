"""Mutated HTTP/2 connections (seeded, bounded) on a prior-knowledge h2c listener: each ends
with frames or a close, never a stall; the worker logs no unexpected exception and goes on
serving. Valid sequences are built with the `hpack` encoder, then cut, flipped and spliced."""
from __future__ import annotations

import random
import socket
import struct

import hpack
import httpx
import pytest

from tests.integration.http2.h2_for_test import H2Worker
from tests.integration.proxy.proxy_for_test import Origin, pass_through_snapshot_for_test

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", sid) + payload


def connection(rng: random.Random) -> bytes:
    """A plausible client connection: preface, SETTINGS, a few requests (some with bodies)."""
    enc = hpack.Encoder()
    out = [PREFACE, frame(4, 0, 0, b"")]
    sid = 1
    for _ in range(rng.randint(1, 3)):
        headers = [(":method", rng.choice(["GET", "POST"])), (":scheme", "http"), (":path", rng.choice(["/", "/a?b=1"])),
                   (":authority", "h.test"), ("user-agent", "fuzz")]
        if rng.random() < 0.3:
            headers.append(("te", "trailers"))
        block = enc.encode(headers)
        body = headers[0][1] == "POST"
        out.append(frame(1, 0x4 if body else 0x5, sid, block))
        if body:
            out.append(frame(0, 0x1, sid, b"hello"))
        sid += 2
    if rng.random() < 0.3:
        out.append(frame(6, 0, 0, b"12345678"))  # PING
    return b"".join(out)


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(PREFACE), len(b) + 1)  # keep the preface: test the frame layer
        op = rng.randrange(4)
        if op == 0 and pos < len(b):
            b[pos] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        elif op == 2:
            del b[pos:pos + rng.randint(1, 9)]
        else:
            b = b[:pos]
    return bytes(b)


def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, read until the server closes or stays quiet for 0.25 s (a live connection
    waiting for more frames); a connection that answers nothing and never closes shows up as
    an empty result, which the test refuses."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.settimeout(0.25)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out


def frame_types(out: bytes) -> list[int]:
    kinds, i = [], 0
    while i + 9 <= len(out):
        kinds.append(out[i + 3])
        i += 9 + int.from_bytes(out[i:i + 3], "big")
    return kinds


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    origin = Origin()
    snap = pass_through_snapshot_for_test(port=origin.port)
    w = H2Worker(snap, tmp_path_factory.mktemp("h2fuzz"), env={"MESHWAY_KEEPALIVE_TIMEOUT": "2",
                                                               "MESHWAY_CLIENT_HEADER_TIMEOUT": "2"})
    # The worker imports its HTTP/2 stack with its first HTTP/2 connection: not within a mutant's
    # 0.25 s read window (on a loaded machine the first mutant got nothing back in time).
    with httpx.Client(http1=False, http2=True) as c:
        assert c.get(f"http://127.0.0.1:{w.plain}/warm").status_code == 200
    yield w
    w.stop()
    origin.close()


@pytest.mark.slow
def test_mutated_h2_connections_end_cleanly_and_the_worker_lives_on(worker):
    rng = random.Random(20261206)
    answered = 0
    for _ in range(160):
        data = mutate(rng, connection(rng))
        out = exchange(worker.plain, data)
        assert out[3:4] == b"\x04", (data, out[:40])  # the server's SETTINGS came first, whatever followed
        answered += 1 in frame_types(out)  # HEADERS: at least one request went through
        assert worker.alive(), data
    assert answered > 10  # the mutants reach the proxy, not only the frame parser
    with httpx.Client(http1=False, http2=True) as c:
        assert c.get(f"http://127.0.0.1:{worker.plain}/after").status_code == 200
    log = worker.error_log()
    assert "Traceback" not in log and "proxy error" not in log, log[-3000:]
