"""Byte pumps for the streaming scenarios, run as `python -m meshbench.sinks MODE ...`.

Servers (print their port on the first stdout line, then serve until killed or TTL):
  tcp                    read an 8-byte big-endian length, then that many bytes, answer b"K"
  tls CERT KEY           the same behind TLS (the passthrough target)
  upload                 HTTP/1.1: drain a request body (Content-Length or chunked), answer its size
Clients (print one JSON line):
  source HOST PORT SIZE [SNI]          push SIZE bytes, time until the sink's b"K"
  upload-client HOST PORT SIZE         POST SIZE bytes to /upload with Content-Length
Timing is end to end at the client: a proxy's buffers do not count as delivered.
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import sys
import threading
import time

CHUNK = 1 << 20
IO_TIMEOUT = 20.0  # seconds without progress before a client gives up
TTL_SECONDS = 4 * 3600  # a sink left behind by a crashed run still goes away
MAX_CONNECTIONS = 1_000_000


def _recv_exact(conn, n: int, buf: bytearray) -> int:
    view, got = memoryview(buf), 0
    while got < n:
        k = conn.recv_into(view[: min(len(buf), n - got)])
        if not k:
            break
        got += k
    return got


def _serve_stream(conn) -> None:
    buf = bytearray(CHUNK)
    head = _read_small(conn, 8)
    if len(head) < 8:
        return
    size = struct.unpack(">Q", head)[0]
    got = _recv_exact(conn, size, buf)
    conn.sendall(b"K" if got == size else b"E")


def _read_small(conn, n: int) -> bytes:
    """Exactly n bytes (fewer at EOF); works on TLS sockets, which lack MSG_WAITALL."""
    out = b""
    for _ in range(n):  # at most n reads for n bytes
        part = conn.recv(n - len(out))
        if not part:
            break
        out += part
        if len(out) == n:
            break
    return out


def _read_head(conn) -> tuple[bytes, bytes]:
    data = b""
    for _ in range(64):  # headers arrive in a few reads; 64 KiB is plenty
        part = conn.recv(65536)
        if not part:
            return b"", b""
        data += part
        if b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            return head, rest
    return b"", b""


def _drain_chunked(conn, rest: bytes, buf: bytearray) -> int:
    total, data = 0, rest
    for _ in range(100_000_000):  # one iteration per chunk or per read
        line_end = data.find(b"\r\n")
        if line_end < 0:
            more = conn.recv(65536)
            if not more:
                return total
            data += more
            continue
        size = int(data[:line_end].split(b";")[0], 16)
        data = data[line_end + 2:]
        if size == 0:
            return total
        need = size + 2 - len(data)
        if need > 0:
            _recv_exact(conn, need, buf)
            data = b""
        else:
            data = data[size + 2:]
        total += size
    return total


def _serve_upload(conn) -> None:
    buf = bytearray(CHUNK)
    for _ in range(10_000):  # keep-alive requests on one connection
        head, rest = _read_head(conn)
        if not head:
            return
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            got = _drain_chunked(conn, rest, buf)
        else:
            size = int(hdrs.get("content-length", "0"))
            got = len(rest) + _recv_exact(conn, size - len(rest), buf)
        body = str(got).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def _server(handler, ctx: ssl.SSLContext | None = None) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(sock.getsockname()[1], flush=True)
    threading.Timer(TTL_SECONDS, os._exit, args=(0,)).start()
    for _ in range(MAX_CONNECTIONS):
        conn, _ = sock.accept()
        threading.Thread(target=_guarded, args=(handler, conn, ctx), daemon=True).start()


def _guarded(handler, conn, ctx) -> None:
    try:
        if ctx:
            conn = ctx.wrap_socket(conn, server_side=True)
        with conn:
            handler(conn)
    except (OSError, ValueError, ssl.SSLError):
        pass  # a client that went away is not the sink's problem


def _source(host: str, port: int, size: int, sni: str | None) -> dict:
    t0 = time.perf_counter()
    sock = socket.create_connection((host, port), timeout=IO_TIMEOUT)
    if sni:
        ctx = ssl._create_unverified_context()
        sock = ctx.wrap_socket(sock, server_hostname=sni)
    block = memoryview(bytes(CHUNK))
    with sock:
        sock.sendall(struct.pack(">Q", size))
        left = size
        for _ in range(size // CHUNK + 2):
            if left <= 0:
                break
            n = min(left, CHUNK)
            sock.sendall(block[:n])
            left -= n
        ack = sock.recv(1)
    secs = time.perf_counter() - t0
    return {"bytes": size, "seconds": round(secs, 4), "mb_per_s": round(size / secs / 1e6, 1), "ack": ack.decode()}


def _upload_client(host: str, port: int, size: int) -> dict:
    t0 = time.perf_counter()
    block = memoryview(bytes(CHUNK))
    with socket.create_connection((host, port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: bench.test\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)
        left = size
        for _ in range(size // CHUNK + 2):
            if left <= 0:
                break
            n = min(left, CHUNK)
            sock.sendall(block[:n])
            left -= n
        head, rest = _read_head(sock)
    secs = time.perf_counter() - t0
    status = head.split(b" ", 2)[1].decode() if head else "none"
    return {"bytes": size, "seconds": round(secs, 3), "mb_per_s": round(size / secs / 1e6, 1),
            "status": status, "echoed": rest.decode(errors="replace")[:40]}


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "tcp":
        _server(_serve_stream)
    elif mode == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(argv[1], argv[2])
        _server(_serve_stream, ctx)
    elif mode == "upload":
        _server(_serve_upload)
    elif mode == "source":
        print(json.dumps(_source(argv[1], int(argv[2]), int(argv[3]), argv[4] if len(argv) > 4 else None)))
    elif mode == "upload-client":
        print(json.dumps(_upload_client(argv[1], int(argv[2]), int(argv[3]))))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
