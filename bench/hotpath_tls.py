"""The CPU cost of TLS per keep-alive request, by transport, in instructions (callgrind).

A server process (under valgrind) answers a fixed small HTTP/1.1 response per request on one TLS
(or plain) connection; a client process sends `--requests` keep-alive requests one after the
other, as one wrk connection does. Only the server's event loop run over the measured requests
is counted (the handshake and a warm-up are not), so the figure is what the transport costs per
request: uvloop's loop, the TLS records, the syscalls' user-space side and the protocol's
`data_received`/`write` (the same tiny protocol for every transport).

    .venv/bin/python bench/hotpath_tls.py [--requests 2000] [--impls plain,python,compiled] [--body 100]
    .venv/bin/python bench/hotpath_tls.py --full [--impls plain,python,compiled]
    .venv/bin/python bench/hotpath_tls.py --handshakes --requests 300 --warm 20
    .venv/bin/python bench/hotpath_tls.py --idle 2000 --warm 50      # KiB of RSS per idle connection

`--handshakes`: each request on a new connection (accept, a full TLS 1.3 handshake, the
request, the close), as in a burst of new clients. `--full`: the server is a meshway worker (the default path: route, X-Forwarded-*, Via,
latency headers, access log) proxying to an origin in another process, so the figure is the
whole HTTPS scenario's CPU per request on this side (the worker's, not the origin's).
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
import shutil
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
    if args.serve == "compiled":
        from meshway.proxy._core import _tlssock
        listener = tlspolicy.context(ssl.PROTOCOL_TLS_SERVER)
        _tlssock.install_sni(listener)

    def accepted() -> None:
        conn, _ = lsock.accept()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not args.handshakes:  # one connection
            loop.remove_reader(lsock.fileno())
        if args.serve == "compiled":
            _tlssock.TLSTransport(loop, conn, listener, lambda: Answer(server), lambda name: ctx)
        else:
            loop.create_task(loop.connect_accepted_socket(lambda: Answer(server), conn, ssl=ctx))

    loop.add_reader(lsock.fileno(), accepted)
    print(f"ready {lsock.getsockname()[1]}", flush=True)
    marks = list(server.marks.values())
    if args.idle:  # memory of idle kept-alive connections: RSS after the warm ones, after all
        rss = []
        for fut in marks:
            loop.run_until_complete(fut)
            loop.run_until_complete(asyncio.sleep(0.2))
            rss.append(_rss_kib())
        print(f"idle {(rss[1] - rss[0]) / args.requests:.1f}", flush=True)
        loop.run_until_complete(server.closed)
        return
    loop.run_until_complete(marks[0])  # the handshake and the warm-up: not counted
    collections.deque(itertools.starmap(loop.run_until_complete, [(marks[1],)]), maxlen=0)  # counted
    loop.run_until_complete(server.closed)


class Control(asyncio.Protocol):
    """The client's side channel in `--full` runs: `w` = warm-up done (acked with `k`), `d` = done."""

    def __init__(self, marks: list) -> None:
        self.marks = marks

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for c in data:
            fut = self.marks.pop(0)
            if c == ord("w"):
                self.transport.write(b"k")
            fut.set_result(None)


def serve_full(args: argparse.Namespace) -> None:
    import uvloop

    sys.path[:0] = [str(HERE), str(HERE.parent / "src")]
    from hotpath_inproc import _snapshot
    from meshway.proxy import Worker
    from meshway.settings import ListenSpec, load_settings

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    tmp = Path(tempfile.mkdtemp(prefix="meshway-tlsbench-"))
    conf = tmp / "meshway.conf"
    impl = args.serve.removeprefix("full-")
    tls = "" if impl == "plain" else f"ssl_cert = {args.cert}\nssl_cert_key = {args.key}\ntls_impl = {impl}\n"
    conf.write_text(f"prefix = {tmp}\n{tls}")
    worker = Worker(loop, load_settings(str(conf)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    spec = ListenSpec(host="127.0.0.1", port=sock.getsockname()[1], ssl=impl != "plain")
    loop.run_until_complete(worker.serve_sockets([(sock, spec, "proxy")]))
    reply = loop.run_until_complete(worker.apply_config(_snapshot("1", args.origin), None))
    assert reply["op"] == "applied", reply
    marks = [loop.create_future(), loop.create_future()]
    waits = list(marks)
    ctrl = loop.run_until_complete(loop.create_server(lambda: Control(marks), "127.0.0.1", 0))
    print(f"ready {sock.getsockname()[1]} {ctrl.sockets[0].getsockname()[1]}", flush=True)
    loop.run_until_complete(waits[0])
    collections.deque(itertools.starmap(loop.run_until_complete, [(waits[1],)]), maxlen=0)  # counted
    shutil.rmtree(tmp, ignore_errors=True)


def origin() -> None:
    """A keep-alive origin (another process: its cost is not counted)."""
    import uvloop

    sys.path.insert(0, str(HERE))
    from hotpath_inproc import Origin

    loop = uvloop.new_event_loop()
    srv = loop.run_until_complete(loop.create_server(Origin, "127.0.0.1", 0))
    print(f"ready {srv.sockets[0].getsockname()[1]}", flush=True)
    loop.run_forever()


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def idle_kib(impl: str, args: argparse.Namespace, cert: tuple[str, str]) -> float:
    """KiB of server RSS per idle TLS connection (one request made, then kept open)."""
    cmd = [sys.executable, __file__, "--serve", impl, "--cert", cert[0], "--key", cert[1], "--requests",
           str(args.idle), "--warm", str(args.warm), "--body", str(args.body), "--handshakes", "--idle", str(args.idle)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().split()[1])
    socks = [client(port, 1, impl == "plain", keep=True) for _ in range(args.warm + args.idle)]
    line = proc.stdout.readline()
    for s in socks:
        s.close()
    proc.wait(timeout=60)
    return float(line.split()[1])


def client_handshakes(port: int, total: int, plain: bool) -> None:
    """`total` new connections, one request each (TLS: a full handshake each, no resumption)."""
    for _ in range(total):
        client(port, 1, plain)


def client(port: int, total: int, plain: bool, ctrl: int = 0, warm: int = 0, keep: bool = False):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not plain:
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname, cctx.verify_mode = False, ssl.CERT_NONE
        cctx.set_alpn_protocols(["http/1.1"])
        sock = cctx.wrap_socket(sock, server_hostname="bench.test")
    control = socket.create_connection(("127.0.0.1", ctrl)) if ctrl else None
    for i in range(total):
        if control is not None and i == warm:
            control.sendall(b"w")
            assert control.recv(1) == b"k"
        sock.sendall(REQUEST)
        got = b""
        while b"\r\n\r\n" not in got or not got.endswith(b"x" if control is None else b"hello"):
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("server closed early")
            got += chunk
    if control is not None:
        control.sendall(b"d")
        control.close()
    if keep:
        return sock
    sock.close()


def measure(impl: str, args: argparse.Namespace, cert: tuple[str, str], origin_port: int = 0) -> float:
    out = Path(tempfile.mkdtemp(prefix="meshway-tlsbench-")) / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=starmap_next",
           f"--callgrind-out-file={out}", sys.executable, __file__, "--serve", impl, "--cert", cert[0], "--key", cert[1],
           "--requests", str(args.requests), "--warm", str(args.warm), "--body", str(args.body),
           "--origin", str(origin_port)] + (["--handshakes"] if args.handshakes else [])
    if origin_port:
        cmd[cmd.index("--serve") + 1] = f"full-{impl}"
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")
    ports = [int(p) for p in line.split()[1:]]
    if args.handshakes:
        client_handshakes(ports[0], args.warm + args.requests, impl == "plain")
    else:
        client(ports[0], args.warm + args.requests, impl == "plain", ctrl=ports[1] if len(ports) > 1 else 0,
               warm=args.warm)
    _, err = proc.communicate(timeout=600)
    if proc.returncode:
        raise SystemExit(f"server failed: {err}")
    total = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    shutil.rmtree(out.parent, ignore_errors=True)
    return int(total.group(1)) / args.requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--body", type=int, default=100)
    ap.add_argument("--impls", default="plain,python,compiled")
    ap.add_argument("--full", action="store_true", help="a meshway worker's whole HTTPS path, not the transport alone")
    ap.add_argument("--handshakes", action="store_true",
                    help="a new connection (and full TLS handshake) per request, the transport alone")
    ap.add_argument("--idle", type=int, default=0,
                    help="N idle kept-alive connections: KiB of server RSS each (no valgrind)")
    ap.add_argument("--serve", choices=["plain", "python", "compiled", "full-plain", "full-python", "full-compiled",
                                        "origin"], help=argparse.SUPPRESS)
    ap.add_argument("--origin", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        if args.serve == "origin":
            origin()
        elif args.serve.startswith("full-"):
            serve_full(args)
        else:
            serve(args)
        return
    cert_dir = Path(tempfile.mkdtemp(prefix="meshway-tlsbench-"))
    cert = certificate(cert_dir)
    orig = None
    if args.full:
        orig = subprocess.Popen([sys.executable, __file__, "--serve", "origin"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(orig.stdout.readline().split()[1]) if orig else 0
        for impl in args.impls.split(","):
            if args.idle:
                print(f"{impl:9} {idle_kib(impl, args, cert):7.1f} KiB per idle connection", flush=True)
                continue
            count = measure(impl, args, cert, port)
            what = " (whole worker)" if orig else " (new connection each)" if args.handshakes else ""
            print(f"{impl:9} {count / 1000:7.1f}k instructions per request{what}",
                  flush=True)
    finally:
        if orig is not None:
            orig.kill()
        shutil.rmtree(cert_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
