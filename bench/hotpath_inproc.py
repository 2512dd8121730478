"""In-process harness for the HTTP/1.1 hot path: client, meshway worker and origin on one uvloop
loop, real transports on loopback; prints the proxy's CPU µs per request (user and sys).

    .venv/bin/python bench/hotpath_inproc.py [--requests 50000] [--conns 50] [--snapshot 1|plugins|10k]
                                             [--profile out.prof] [--repeat 3]

The proxy's cost is (CPU of a run through meshway - CPU of the same requests sent straight to
the origin) / requests, both from getrusage on this process: the client and origin cost cancel
out, and CPU time barely depends on what else the machine runs. Use it to compare changes;
`bench/hotpath_cpu.py` gives the figures against nginx. `--profile` runs cProfile over the
proxied run only (its overhead inflates every figure, use it for proportions).
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import sys
import tempfile
from pathlib import Path

import httptools
import uvloop

HERE = Path(__file__).resolve().parent
# bench/ after the stdlib: bench/profile.py would shadow the stdlib's `profile` (cProfile needs it)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
import cProfile  # noqa: E402
sys.path.insert(0, str(HERE.parent / "src"))

_ANSWER = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 18:58:07 GMT\r\n"
           b"Content-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello")


class Origin(asyncio.Protocol):
    """Answers every request (GET, no body) with nginx's 5-byte answer."""

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.transport.write(_ANSWER * data.count(b"\r\n\r\n"))


class Client(asyncio.Protocol):
    """Sends one request at a time (keep-alive) until the shared budget is spent."""

    def __init__(self, run, request):
        self.run, self.request = run, request
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next()

    def _next(self):
        if self.run["left"] > 0:
            self.run["left"] -= 1
            self.transport.write(self.request)
        else:
            self.transport.close()
            self.run["open"] -= 1
            if not self.run["open"]:
                self.run["done"].set_result(None)

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_complete(self):
        if self.parser.get_status_code() != 200:
            self.run["bad"] += 1
        self.loop_next()

    def loop_next(self):
        self._next()


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


async def _drive(port: int, requests: int, conns: int, host: str, extra: bytes) -> tuple[float, float, int]:
    loop = asyncio.get_running_loop()
    run = {"left": requests, "open": conns, "bad": 0, "done": loop.create_future()}
    request = b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (b"/" if host == "127.0.0.1" else b"/r5000", host.encode(), extra)
    u0, s0 = _cpu()
    for _ in range(conns):
        await loop.create_connection(lambda: Client(run, request), "127.0.0.1", port)
    await run["done"]
    u1, s1 = _cpu()
    return u1 - u0, s1 - s0, run["bad"]


def _snapshot(kind: str, origin: int) -> dict:
    from meshbench.meshway import declarative, many_routes, plugin_services, service
    from meshway.model import parse_declarative

    if kind == "plugins":
        svcs, consumers = plugin_services(origin)
        return parse_declarative(declarative(svcs, consumers, [{"name": "prometheus"}]))
    if kind == "10k":
        return parse_declarative(declarative([many_routes(origin, 10_000)]))
    if kind == "upstream":  # the service's host is an upstream entity of one target (round-robin)
        doc = declarative([service("origin", origin, [{"name": "root", "paths": ["/"]}])])
        doc["services"][0]["url"] = "http://origin-up"
        doc["upstreams"] = [{"name": "origin-up", "targets": [{"target": f"127.0.0.1:{origin}"}]}]
        return parse_declarative(doc)
    return parse_declarative(declarative([service("origin", origin, [{"name": "root", "paths": ["/"]}])]))


async def main(args: argparse.Namespace) -> None:
    from meshbench.meshway import BENCH_KEY
    from meshway.proxy import Worker
    from meshway.settings import ListenSpec, load_settings

    loop = asyncio.get_running_loop()
    origin_srv = await loop.create_server(Origin, "127.0.0.1", 0)
    origin = origin_srv.sockets[0].getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="meshway-inproc-")
    conf = Path(tmp) / "meshway.conf"
    conf.write_text(f"prefix = {tmp}\n")
    worker = Worker(loop, load_settings(str(conf)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    await worker.serve_sockets([(sock, ListenSpec(host="127.0.0.1", port=sock.getsockname()[1]), "proxy")])
    reply = await worker.apply_config(_snapshot(args.snapshot, origin), None)
    assert reply["op"] == "applied", reply
    port = sock.getsockname()[1]
    host = "r5000.bench.test" if args.snapshot == "10k" else "127.0.0.1"
    extra = b"apikey: %s\r\n" % BENCH_KEY.encode() if args.snapshot == "plugins" else b""
    await _drive(port, 2000, args.conns, host, extra)  # warm-up: pool filled, caches hot
    for _ in range(args.repeat):
        du, ds, _ = await _drive(origin, args.requests, args.conns, host, extra)
        prof = cProfile.Profile() if args.profile else None
        if prof:
            prof.enable()
        pu, ps, bad = await _drive(port, args.requests, args.conns, host, extra)
        if prof:
            prof.disable()
            prof.dump_stats(args.profile)
        n = args.requests
        print(f"proxy: {(pu - du + ps - ds) / n * 1e6:6.2f} us/req  user {(pu - du) / n * 1e6:6.2f}"
              f"  sys {(ps - ds) / n * 1e6:6.2f}   (direct run {(du + ds) / n * 1e6:.2f} us/req; bad {bad})")
    await worker.shutdown(0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--snapshot", default="1", choices=["1", "plugins", "10k", "upstream"])
    ap.add_argument("--profile")
    ap.add_argument("--repeat", type=int, default=3)
    uvloop.run(main(ap.parse_args()))
