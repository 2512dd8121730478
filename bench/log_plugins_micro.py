"""The Python cost per request of the logging, tracing and proxy-cache plugins: hotpath_micro's
fake-transport loop over one route with one plugin (the per-plugin table of bench/README).

    .venv/bin/python bench/log_plugins_micro.py [--only none,file-log,...] [--requests 20000]
    PYTHONHASHSEED=0 valgrind --tool=callgrind --collect-atstart=no --toggle-collect=starmap_next \\
        --callgrind-out-file=/tmp/cg.out .venv/bin/python bench/log_plugins_micro.py --only http-log --counted 2000

Variants: `none` (no plugin), `file-log` (a file in a temp dir), `http-log`, `tcp-log`, `udp-log`,
`syslog`, `statsd` (Kong's default metrics, over UDP), `opentelemetry`, `zipkin-1` / `zipkin-0`
(sample_ratio 1 and 0), `proxy-cache-miss` (memory strategy, a new path per request, so every
request is a miss that stores its answer) and `proxy-cache-hit` (the same request, answered from
the cache: the upstream is never asked). Requests run with the loop marked running, as in a
worker, and every 50 requests the event loop turns once (for every variant, so `none` pays it
too): the batches the log plugins queue are sent there, so what they cost per request includes
their share of a batch, JSON encoding and sending. Their
receivers (an HTTP server answering 200, a TCP, a UDP and a syslog socket) run in a separate
process, which callgrind does not count. The syslog plugin's socket path is pointed at the
receiver's (a machine may have no /dev/log).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE), str(HERE.parent / "src")]

import hotpath_micro  # noqa: E402
from hotpath_inproc import _ANSWER  # noqa: E402

TURN = 50  # requests per turn of the event loop
VARIANTS = ("none", "file-log", "http-log", "tcp-log", "udp-log", "syslog", "statsd", "opentelemetry",
            "zipkin-1", "zipkin-0", "proxy-cache-miss", "proxy-cache-hit", "bot-detection", "redirect")

# The receivers, in their own process: ports and the syslog path are printed on one line.
_RECEIVERS = r"""
import asyncio, os, socket, sys
class Http(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, data):
        self.buf += data
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep: return
            n = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length": n = int(v)
            if len(rest) < n: return
            self.buf = rest[n:]
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
class Drain(asyncio.Protocol):
    def data_received(self, data): pass
class Dgram(asyncio.DatagramProtocol):
    def datagram_received(self, data, addr): pass
async def main():
    loop = asyncio.get_running_loop()
    http = await loop.create_server(Http, "127.0.0.1", 0)
    tcp = await loop.create_server(Drain, "127.0.0.1", 0)
    udp, _ = await loop.create_datagram_endpoint(Dgram, local_addr=("127.0.0.1", 0))
    path = os.path.join(sys.argv[1], "syslog.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); unix.bind(path); unix.setblocking(False)
    def drain():
        try:
            while True: unix.recv(65536)
        except BlockingIOError:
            pass
    loop.add_reader(unix.fileno(), drain)
    print(http.sockets[0].getsockname()[1], tcp.sockets[0].getsockname()[1],
          udp.get_extra_info("sockname")[1], path, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def plugin_for(variant: str, tmp: Path, http: int, tcp: int, udp: int) -> dict | None:
    endpoint = f"http://127.0.0.1:{http}/sink"
    return {
        "none": None,
        "file-log": {"name": "file-log", "config": {"path": str(tmp / "file.log")}},
        "http-log": {"name": "http-log", "config": {"http_endpoint": endpoint}},
        "tcp-log": {"name": "tcp-log", "config": {"host": "127.0.0.1", "port": tcp}},
        "udp-log": {"name": "udp-log", "config": {"host": "127.0.0.1", "port": udp}},
        "syslog": {"name": "syslog"},
        "statsd": {"name": "statsd", "config": {"host": "127.0.0.1", "port": udp}},
        "opentelemetry": {"name": "opentelemetry", "config": {"traces_endpoint": endpoint}},
        "zipkin-1": {"name": "zipkin", "config": {"http_endpoint": endpoint, "sample_ratio": 1}},
        "zipkin-0": {"name": "zipkin", "config": {"http_endpoint": endpoint, "sample_ratio": 0}},
        "proxy-cache-miss": {"name": "proxy-cache", "config": {"strategy": "memory"}},
        "proxy-cache-hit": {"name": "proxy-cache", "config": {"strategy": "memory"}},
        "bot-detection": {"name": "bot-detection"},  # Kong's rules against the request's User-Agent
        "redirect": {"name": "redirect", "config": {"location": "https://example.test/moved"}},  # no upstream
    }[variant]


def snapshot_for(plugin: dict | None) -> dict:
    from meshbench.meshway import declarative, service
    from meshway.model import parse_declarative

    svc = service("logged", 9, [{"name": "logged-root", "paths": ["/"]}], [plugin] if plugin else [])
    return parse_declarative(declarative([svc]))


def setup(variant: str, tmp: Path, receivers: list[str]):
    http, tcp, udp, syslog_path = int(receivers[0]), int(receivers[1]), int(receivers[2]), receivers[3]
    from meshway.plugins.bundled import syslog

    syslog.SYSLOG_SOCKET = syslog_path
    plugin = plugin_for(variant, tmp, http, tcp, udp)
    hotpath_micro._snapshot = lambda _kind, _origin: snapshot_for(plugin)
    loop, worker, server, client_t, conn, up_t, request = hotpath_micro.setup("1")
    conn.requests = -10**9
    worker.pool.put(conn)

    count = itertools.count(1)

    def exchange(req: bytes, upstream: bool = variant not in ("proxy-cache-hit", "redirect")) -> None:
        """One request through the proxy as a worker runs it: with the loop marked running (log
        phases queue their entries on it), and every TURN requests one turn of the loop, where
        the queued batches go out (a turn per request would cost more than most plugins)."""
        asyncio.events._set_running_loop(loop)
        try:
            server.data_received(req)
        finally:
            asyncio.events._set_running_loop(None)
        if upstream:
            while not up_t.out:  # an async phase went through a task: let it run
                loop.run_until_complete(asyncio.sleep(0))
            asyncio.events._set_running_loop(loop)
            try:
                conn.data_received(_ANSWER)
            finally:
                asyncio.events._set_running_loop(None)
        assert client_t.out, "answered"
        client_t.out.clear()
        up_t.out.clear()
        if next(count) % TURN == 0:
            loop.run_until_complete(asyncio.sleep(0))

    if variant == "proxy-cache-miss":
        paths = (b"/p%d" % i for i in itertools.count())
        return loop, lambda: exchange(request.replace(b"GET / ", b"GET %s " % next(paths), 1))
    if variant == "proxy-cache-hit":
        exchange(request, upstream=True)  # the miss that fills the cache
    return loop, lambda: exchange(request)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(VARIANTS))
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--counted", type=int, default=0, help="run N requests of the one variant in starmap (callgrind)")
    ap.add_argument("--warmup", type=int, default=2000, help="requests before measuring")
    args = ap.parse_args()
    variants = args.only.split(",")
    if args.counted and len(variants) != 1:
        ap.error("--counted takes one variant")
    tmp = Path(tempfile.mkdtemp(prefix="meshway-logmicro-"))
    receiver = subprocess.Popen([sys.executable, "-c", _RECEIVERS, str(tmp)], stdout=subprocess.PIPE, text=True)
    try:
        ports = receiver.stdout.readline().split()
        for variant in variants:
            loop, run_one = setup(variant, tmp, ports)
            for _ in range(args.warmup):
                run_one()
            if args.counted:  # only this runs inside starmap_next, so callgrind counts only requests
                collections.deque(itertools.starmap(run_one, itertools.repeat((), args.counted)), maxlen=0)
                continue
            t0 = time.process_time()
            for _ in range(args.requests):
                run_one()
            print(f"{variant:17s} {(time.process_time() - t0) / args.requests * 1e6:.2f} us of Python per request")
    finally:
        receiver.kill()
        receiver.wait()


if __name__ == "__main__":
    main()
