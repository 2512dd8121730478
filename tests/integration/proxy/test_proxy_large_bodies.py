"""1 GiB up and down through the proxy without its memory growing (flow control both ways)."""
from __future__ import annotations

import json
import socket

import pytest

from tests.integration.proxy.proxy_for_test import Origin, WorkerProcess, pass_through_snapshot_for_test

GIB = 1 << 30


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    origin = Origin()
    w = WorkerProcess(pass_through_snapshot_for_test(port=origin.port),
                      tmp_path_factory.mktemp("large"))
    yield w
    w.stop()
    origin.close()


def _warm(worker) -> int:
    with socket.create_connection(("127.0.0.1", worker.port)) as s:
        s.sendall(b"POST /warm HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" + b"w" * 1048576)
        s.recv(65536)
    return rss_kib(worker.proc.pid)


@pytest.mark.slow
def test_one_gib_upload_streams(worker):
    before = _warm(worker)
    chunk = b"u" * (1 << 20)
    with socket.create_connection(("127.0.0.1", worker.port), timeout=60) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % GIB)
        for _ in range(GIB // len(chunk)):
            s.sendall(chunk)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            data += s.recv(65536)
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["body_len"] == GIB
    assert rss_kib(worker.proc.pid) - before < 16 * 1024


@pytest.mark.slow
def test_one_gib_download_streams(worker):
    before = _warm(worker)
    buf = bytearray(1 << 20)
    total = 0
    with socket.create_connection(("127.0.0.1", worker.port), timeout=60) as s:
        s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: x\r\n\r\n" % GIB)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        head, rest = head.split(b"\r\n\r\n", 1)
        assert b"Content-Length: %d" % GIB in head
        total = len(rest)
        while total < GIB:
            n = s.recv_into(buf)
            assert n
            total += n
    assert total == GIB
    assert rss_kib(worker.proc.pid) - before < 16 * 1024
