"""Mutated HTTP/1.1 requests (seeded, bounded): every one gets an HTTP answer or a close, the
worker never logs an unexpected exception, and it goes on serving."""
from __future__ import annotations

import random
import socket

import httpx
import pytest

from tests.integration.proxy.proxy_for_test import Origin, WorkerProcess, pass_through_snapshot_for_test

TEMPLATES = [
    b"GET /a?x=1 HTTP/1.1\r\nHost: h.test\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    b"POST /b HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /d HTTP/1.0\r\nConnection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: h.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET /e HTTP/1.1\r\nHost: h.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
]
NASTY = [b"\r", b"\n", b"\x00", b" ", b":", b"\t", b"\xff", b"\r\n", b"\r\n\r\n", b"0", b"-1", b"99999999999999999999",
         b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: b\r\n", b"HTTP/1.1"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = rng.choice(NASTY)
        elif op == 2:
            del b[pos:pos + rng.randint(1, 8)]
        elif op == 3:
            b = b[:pos]
        else:
            b[pos:pos] = b[max(0, pos - 20):pos]  # repeat a piece
    return bytes(b)


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # nothing more comes: the proxy must answer or close now
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    origin = Origin()
    snap = pass_through_snapshot_for_test(port=origin.port)
    w = WorkerProcess(snap, tmp_path_factory.mktemp("fuzz"), env={"MESHWAY_CLIENT_BODY_TIMEOUT": "2",
                                                                "MESHWAY_CLIENT_HEADER_TIMEOUT": "2"})
    yield w
    w.stop()
    origin.close()


def test_mutated_requests_get_an_answer_or_a_close_and_the_worker_lives_on(worker):
    rng = random.Random(20261206)
    answered = 0
    for i in range(400):
        data = mutate(rng, rng.choice(TEMPLATES))
        out = exchange(worker.port, data)  # recv timeout (5 s) fails the test: a stalled connection
        if out:
            assert out.startswith(b"HTTP/1."), (data, out[:200])
            answered += 1
        assert worker.alive(), data
    assert answered > 100  # most mutants still reach the parser far enough to be answered
    assert httpx.get(worker.url + "/after").status_code == 200
    log = worker.error_log()
    assert "Traceback" not in log and "proxy error" not in log, log[-3000:]
