"""The Python cost of one proxied HTTP/2 request (h2load -m1 style), without sockets: an
`H2Server` and a pooled HTTP/1.1 upstream connection get fake transports, the client's frames
(one HEADERS+END_STREAM per request, HPACK-indexed as h2load sends them after the first) are fed
to `data_received`, the origin's answer to the upstream connection. It measures the user-space
work meshway adds per HTTP/2 request (not TLS, not the kernel), deterministically enough to
compare changes of a fraction of a microsecond; `bench/hotpath_micro.py` is its HTTP/1.1 twin.

    .venv/bin/python bench/hotpath_h2.py [--snapshot 1|plugins|10k] [--requests 100000]
                                         [--profile out.prof] [--show] [--counted N]
"""
from __future__ import annotations

import asyncio
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE), str(HERE.parent / "src")]

import hpack  # noqa: E402

from hotpath_inproc import _ANSWER  # noqa: E402
from hotpath_micro import FakeTransport, arguments, measure, setup  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    """One HTTP/2 frame."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", sid) + payload


def client_start() -> bytes:
    """What h2load sends first: preface, SETTINGS (window 2^30-1), connection WINDOW_UPDATE."""
    settings = struct.pack(">HI", 3, 100) + struct.pack(">HI", 4, (1 << 30) - 1)
    return PREFACE + frame(4, 0, 0, settings) + frame(8, 0, 0, struct.pack(">I", (1 << 30) - 1 - 65535))


def request_block(kind: str, port: int) -> tuple[bytes, bytes]:
    """The HPACK blocks h2load sends: the first request's, and the later ones' (every field indexed)."""
    from meshbench.meshway import BENCH_KEY

    host = b"r5000.bench.test" if kind == "10k" else b"127.0.0.1:%d" % port
    path = b"/r5000" if kind == "10k" else b"/"
    fields = [(b":method", b"GET"), (b":path", path), (b":scheme", b"https"), (b":authority", host),
              (b"accept", b"*/*"), (b"accept-encoding", b"gzip, deflate"), (b"user-agent", b"h2load nghttp2/1.52.0")]
    if kind == "plugins":
        fields.append((b"apikey", BENCH_KEY.encode()))
    enc = hpack.Encoder()
    first = enc.encode(fields)
    return first, enc.encode(fields)


class Client:
    """Feeds requests to the server: stream ids 1, 3, 5, ..."""

    def __init__(self, server, client_t, conn, up_t, first: bytes, block: bytes):
        self.server, self.client_t, self.conn, self.up_t = server, client_t, conn, up_t
        self.first, self.block = first, block
        self.sid = 1

    def headers(self) -> bytes:
        block = self.first if self.sid == 1 else self.block
        out = frame(1, 0x5, self.sid, block)  # END_STREAM | END_HEADERS
        self.sid += 2
        return out

    def one(self) -> None:
        server, up_t = self.server, self.up_t
        server.data_received(self.headers())
        while not up_t.out:  # an async plugin phase went through a task: let it run
            server.loop.run_until_complete(asyncio.sleep(0))
        self.conn.data_received(_ANSWER)
        self.client_t.out.clear()
        up_t.out.clear()


def main() -> None:
    args = arguments()
    from meshway.proxy.http2 import H2Server

    # One connection carries every request: no stream budget (http2_max_requests) in the way.
    loop, worker, _h1, _t, conn, up_t, _req = setup(args.snapshot, "http2_max_requests = 0;" + args.conf, shm=args.shm)
    conn.requests = -10**9  # never retired by upstream_keepalive_max_requests
    worker.pool.put(conn)
    server = H2Server(worker, "https", 8443, "127.0.0.1", 40000, None, None)
    client_t = FakeTransport()
    server.connection_made(client_t)
    server.data_received(client_start() + frame(4, 1, 0, b""))  # and the ACK of the server's SETTINGS
    first, block = request_block(args.snapshot, 8443)
    client = Client(server, client_t, conn, up_t, first, block)
    client_t.out.clear()
    if args.show:
        server.data_received(client.headers())
        print(b"".join(up_t.out).decode())
        up_t.out.clear()
        conn.data_received(_ANSWER)
        print(repr(b"".join(client_t.out)))
        client_t.out.clear()
    measure(args, loop, client.one, f"h2 {args.snapshot}")


if __name__ == "__main__":
    main()
