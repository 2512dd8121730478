"""Large response bodies arrive byte for byte, whatever their framing and however fast the client
reads.

The compiled relay writes a large body piece straight from the upstream read buffer to the
client's socket and hands only what the socket did not take to the transport (`_h1parse`
`ResponseParser._send_direct`); the pure path copies and joins. Both must give the client the
origin's bytes in order, with the framing the proxy owes it (Content-Length kept; chunked and
close-delimited bodies chunked to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones), keep
the connection usable afterwards, and keep a slow reader's upstream paused rather than buffered.
"""
from __future__ import annotations

import random
import socket
import threading
import time

import pytest

from tests.integration.proxy.proxy_for_test import WorkerProcess, pass_through_snapshot_for_test

# Not a multiple of any read or chunk size, and more than the kernel buffers between the proxy and
# a client that stops reading (its receive window, the proxy's send buffer: up to 4 MiB).
SIZE = 6 * 1024 * 1024 + 12345
BODY = random.Random(7).randbytes(SIZE)


def _body(seed: int) -> bytes:
    """BODY rotated by `seed` bytes: each concurrent client can ask for its own."""
    return BODY[seed:] + BODY[:seed]


class PatternOrigin:
    """Serves BODY (`?<seed>`: rotated, see _body) as `/cl` (Content-Length), `/chunked/<chunk
    size>` and `/close` (no length, closes after), each request on its own thread."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                path, _, seed = head.split(b" ")[1].decode().partition("?")
                body = _body(int(seed or 0))
                if path == "/cl":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE + body)
                elif path.startswith("/chunked/"):
                    step = int(path.split("/")[2])
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for at in range(0, SIZE, step):
                        piece = body[at:at + step]
                        conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                    conn.sendall(b"0\r\n\r\n")
                elif path == "/close":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
                    return

    def close(self) -> None:
        self.stop = True
        self.sock.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    origin = PatternOrigin()
    w = WorkerProcess(pass_through_snapshot_for_test(port=origin.port), tmp_path_factory.mktemp("large-relay"))
    yield w
    w.stop()
    origin.close()


def _read_exact(s: socket.socket, buf: bytearray, n: int, slow: bool) -> bytes:
    got = 0
    while len(buf) < n:
        data = s.recv(65536)
        assert data, f"closed after {len(buf)} of {n} bytes"
        buf += data
        got += len(data)
        if slow and got >= 1 << 20:  # and stops again now and then
            got = 0
            time.sleep(0.1)
    out = bytes(buf[:n])
    del buf[:n]
    return out


def _head(s: socket.socket, buf: bytearray, slow: bool = False) -> bytes:
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        assert data, "closed before the head"
        buf += data
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    del buf[:len(head) + 4]
    if slow:  # the client stops reading a while: the kernel's buffers fill, then the proxy's
        time.sleep(1.0)  # writes come back partial and the rest waits in its transport
    return head


def _dechunk(s: socket.socket, buf: bytearray, slow: bool) -> bytes:
    body = bytearray()
    while True:
        while b"\r\n" not in buf:
            data = s.recv(65536)
            assert data
            buf += data
        line, _, _ = bytes(buf).partition(b"\r\n")
        del buf[:len(line) + 2]
        n = int(line, 16)
        body += _read_exact(s, buf, n + 2, slow)[:n]
        if n == 0:
            return bytes(body)


def _client(worker, slow: bool) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", worker.port), timeout=30)
    if slow:  # a small window that does not grow (not so small that delayed ACKs stall it)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    return s


@pytest.mark.parametrize("slow", [False, True], ids=["fast", "slow"])
@pytest.mark.parametrize("path", ["/cl", "/chunked/131072", "/chunked/1000", "/chunked/40000"])
def test_large_bodies_arrive_whole_and_the_connection_stays_usable(worker, path, slow):
    with _client(worker, slow) as s:
        buf = bytearray()
        for _ in range(2):  # keep-alive: the second answer follows the first on the same connection
            s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
            head = _head(s, buf, slow)
            assert head.startswith(b"HTTP/1.1 200"), head
            if path == "/cl":
                assert b"\r\nContent-Length: %d" % SIZE in head
                body = _read_exact(s, buf, SIZE, slow)
            else:
                assert b"\r\nTransfer-Encoding: chunked" in head
                body = _dechunk(s, buf, slow)
            assert body == BODY
        assert not buf


@pytest.mark.parametrize("slow", [False, True], ids=["fast", "slow"])
def test_close_delimited_body_is_chunked_to_http11_and_closed_to_http10(worker, slow):
    with _client(worker, slow) as s:
        buf = bytearray()
        s.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        head = _head(s, buf, slow)
        assert b"\r\nTransfer-Encoding: chunked" in head
        assert _dechunk(s, buf, slow) == BODY
    with _client(worker, slow) as s:
        buf = bytearray()
        s.sendall(b"GET /chunked/131072 HTTP/1.0\r\nHost: x\r\n\r\n")
        head = _head(s, buf, slow)
        assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
        assert _read_exact(s, buf, SIZE, slow) == BODY
        assert s.recv(65536) == b""  # the end of the body is the close


def test_many_clients_at_once_each_get_their_own_bytes(worker):
    """Interleaved relays share the worker's one read buffer: no client may get another's bytes."""
    errors: list[str] = []

    def one(path: str, seed: int) -> None:
        try:
            with _client(worker, False) as s:
                buf = bytearray()
                s.sendall(b"GET %s?%d HTTP/1.1\r\nHost: x\r\n\r\n" % (path.encode(), seed))
                head = _head(s, buf)
                body = _read_exact(s, buf, SIZE, False) if path == "/cl" else _dechunk(s, buf, False)
                if body != _body(seed):
                    errors.append(f"{path}: body differs ({head[:40]!r})")
        except Exception as e:  # noqa: BLE001  (reported below with the path)
            errors.append(f"{path}: {e!r}")

    paths = ["/cl", "/chunked/131072", "/chunked/40000"] * 4
    threads = [threading.Thread(target=one, args=(p, 1000 * i + 1)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
