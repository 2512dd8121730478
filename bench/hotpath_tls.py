"""The CPU cost of TLS per keep-alive request, by transport, in instructions (callgrind).

A server process (under valgrind) answers a fixed small HTTP/1.1 response per request on one TLS
(or plain) connection; a client process sends `--requests` keep-alive requests one after the
other, as one wrk connection does. Only the server's event loop run over the measured requests
is counted (the handshake and a warm-up are not), so the figure is what the transport costs per
request: uvloop's loop, the TLS records, the syscalls' user-space side and the protocol's
`data_received`/`write` (the same tiny protocol for every transport).

    .venv/bin/python bench/hotpath_tls.py [--requests 2000] [--impls plain,python,compiled] [--body 100]

Transports: `plain` = uvloop TCP (the floor), `python` = uvloop's SSL transport over `ssl`
memory BIOs (the path `tls_impl = python` serves), `compiled` = `_core._tlssock` (OpenSSL on
the socket). The certificate is ECDSA P-256, as in bench/run.sh's HTTPS scenario.
Needs valgrind; instruction counts do not depend on other load on the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUEST = b"GET / HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: wrk\r\n\r\n"


class Answer(asyncio.Protocol):
    """One fixed response per request head; counts requests and wakes the server's phases."""

    def __init__(self, server: "Server") -> None:
        self.server = server
        self.buf = b""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            buf = buf[end + 4:]
            self.transport.write(self.server.response)
            self.server.served()
        self.buf = buf

    def connection_lost(self, exc) -> None:
        self.server.served(closed=True)


class Server:
    def __init__(self, loop, warm: int, measured: int, body: int) -> None:
        self.loop = loop
        self.response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (body, b"x" * body)
        self.count = 0
        self.marks = {warm: loop.create_future(), warm + measured: loop.create_future()}
        self.closed = loop.create_future()

    def served(self, closed: bool = False) -> None:
        if closed:
            if not self.closed.done():
                self.closed.set_result(None)
            return
        self.count += 1
        fut = self.marks.get(self.count)
        if fut is not None:
            fut.set_result(None)


def certificate(tmp: Path) -> tuple[str, str]:
    crt, key = tmp / "bench.crt", tmp / "bench.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=bench.test", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return str(crt), str(key)


def serve(args: argparse.Namespace) -> None:
    import uvloop

    sys.path.insert(0, str(HERE.parent / "src"))
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(loop, args.warm, args.requests, args.body)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.setblocking(False)
    ctx = None
    if args.serve != "plain":
        from meshway import tlspolicy
        ctx = tlspolicy.context(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.load_cert_chain(args.cert, args.key)

    def accepted() -> None:
        conn, _ = lsock.accept()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop.remove_reader(lsock.fileno())
        if args.serve == "compiled":
            from meshway.proxy._core import _tlssock
            listener = tlspolicy.context(ssl.PROTOCOL_TLS_SERVER)
            _tlssock.install_sni(listener)
            _tlssock.TLSTransport(loop, conn, listener, lambda: Answer(server), lambda name: ctx)
        else:
            loop.create_task(loop.connect_accepted_socket(lambda: Answer(server), conn, ssl=ctx))

    loop.add_reader(lsock.fileno(), accepted)
    print(f"ready {lsock.getsockname()[1]}", flush=True)
    marks = list(server.marks.values())
    loop.run_until_complete(marks[0])  # the handshake and the warm-up: not counted
    collections.deque(itertools.starmap(loop.run_until_complete, [(marks[1],)]), maxlen=0)  # counted
    loop.run_until_complete(server.closed)


def client(port: int, total: int, plain: bool) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not plain:
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname, cctx.verify_mode = False, ssl.CERT_NONE
        cctx.set_alpn_protocols(["http/1.1"])
        sock = cctx.wrap_socket(sock, server_hostname="bench.test")
    for _ in range(total):
        sock.sendall(REQUEST)
        got = b""
        while b"\r\n\r\n" not in got or not got.endswith(b"x"):
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("server closed early")
            got += chunk
    sock.close()


def measure(impl: str, args: argparse.Namespace, cert: tuple[str, str]) -> float:
    out = Path(tempfile.mkdtemp(prefix="meshway-tlsbench-")) / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=starmap_next",
           f"--callgrind-out-file={out}", sys.executable, __file__, "--serve", impl, "--cert", cert[0], "--key", cert[1],
           "--requests", str(args.requests), "--warm", str(args.warm), "--body", str(args.body)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")
    client(int(line.split()[1]), args.warm + args.requests, impl == "plain")
    _, err = proc.communicate(timeout=600)
    if proc.returncode:
        raise SystemExit(f"server failed: {err}")
    total = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    return int(total.group(1)) / args.requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--body", type=int, default=100)
    ap.add_argument("--impls", default="plain,python,compiled")
    ap.add_argument("--serve", choices=["plain", "python", "compiled"], help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args)
        return
    cert = certificate(Path(tempfile.mkdtemp(prefix="meshway-tlsbench-")))
    for impl in args.impls.split(","):
        print(f"{impl:9} {measure(impl, args, cert) / 1000:7.1f}k instructions per request", flush=True)


if __name__ == "__main__":
    main()
