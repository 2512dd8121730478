"""The Python cost of one proxied HTTP/1.1 request, without sockets: the client connection and a
pooled upstream connection get fake transports and the request/response bytes are fed to their
protocol callbacks in a loop. What it measures is exactly the user-space work meshway adds per
request on top of uvloop and the kernel (not their cost), deterministically enough to compare
changes of a fraction of a microsecond.

    .venv/bin/python bench/hotpath_micro.py [--snapshot 1|plugins|10k|upstream] [--requests 100000] [--profile out.prof]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import sys
import tempfile
import time
from pathlib import Path

import uvloop

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE), str(HERE.parent / "src")]
import cProfile  # noqa: E402  (after the path fix: bench/profile.py would shadow the stdlib's `profile`)

from hotpath_inproc import _ANSWER, _snapshot  # noqa: E402


class FakeTransport:
    """Collects writes; enough of a uvloop transport for the proxy's hot path."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.write = self.out.append

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: raise AssertionError("closed")
    def is_closing(self) -> bool: return False


_BROWSER = (b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
            b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
            b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
            b"Referer: http://127.0.0.1:8000/\r\nConnection: keep-alive\r\nCookie: session=abc123\r\n"
            b"Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n")


def setup(kind: str, conf: str = "", browser: bool = False, shm: bool = False):
    import meshway.mesh  # noqa: F401  (plugged in as a node's worker has it: meshway.node.worker)
    from meshbench.meshway import BENCH_KEY
    from meshway.proxy import Worker
    from meshway.proxy._http1 import H1Server
    from meshway.proxy._upstream import UpstreamConn
    from meshway.settings import load_settings

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    tmp = tempfile.mkdtemp(prefix="meshway-micro-")
    if shm:  # before the config: its plugins open their tables when it is applied
        from meshway.plugins import attach_shared_memory

        (Path(tmp) / "shm").mkdir()
        attach_shared_memory(Path(tmp) / "shm", 0, 1)
    (Path(tmp) / "meshway.conf").write_text(f"prefix = {tmp}\n" + conf.replace(";", "\n") + "\n")
    worker = Worker(loop, load_settings(str(Path(tmp) / "meshway.conf")))
    reply = loop.run_until_complete(worker.apply_config(_snapshot(kind, 9), None))
    assert reply["op"] == "applied", reply
    server = H1Server(worker, "http", 8000)
    client_t = FakeTransport()
    server.connection_made(client_t)
    conn = UpstreamConn(worker.pool, ("127.0.0.1", 9, None))
    up_t = FakeTransport()
    conn.connection_made(up_t)
    host = b"r5000.bench.test" if kind == "10k" else b"127.0.0.1:8000"
    path = b"/r5000" if kind == "10k" else b"/"
    extra = b"apikey: %s\r\n" % BENCH_KEY.encode() if kind == "plugins" else b""
    if browser:  # the head a browser sends (wrk sends Host alone)
        extra += _BROWSER
    request = b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, host, extra)
    return loop, worker, server, client_t, conn, up_t, request


def one(server, client_t, conn, up_t, request) -> None:
    server.data_received(request)  # takes `conn` from the pool; the response puts it back
    while not up_t.out:  # an async plugin phase went through a task: let it run
        server.loop.run_until_complete(asyncio.sleep(0))
    conn.data_received(_ANSWER)
    client_t.out.clear()
    up_t.out.clear()


def arguments(description: str | None = None) -> argparse.Namespace:
    """The options both in-process harnesses take (this one and hotpath_h2.py)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--snapshot", default="1", choices=["1", "plugins", "10k", "upstream"])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--profile")
    ap.add_argument("--conf", default="", help="extra meshway.conf lines, ';'-separated (what-if runs)")
    ap.add_argument("--show", action="store_true", help="print one request and response as proxied")
    ap.add_argument("--browser", action="store_true", help="requests with a browser's 11 headers, not wrk's Host alone")
    ap.add_argument("--shm", action="store_true",
                    help="plugin counters in the node-wide shared table, as a node's worker has them (the benchmark's "
                         "node); without it, the in-process table of a worker outside a node")
    ap.add_argument("--counted", type=int, default=0,
                    help="run N requests inside itertools.starmap and exit: for instruction counts with "
                         "valgrind --tool=callgrind --collect-atstart=no --toggle-collect=starmap_next")
    return ap.parse_args()


def measure(args: argparse.Namespace, loop, run_one, label: str) -> None:
    """Warm up, then either run `--counted` requests inside starmap (for callgrind) or time
    `--requests` in 5 rounds and print the best round's Python time per request."""
    for _ in range(2000):
        run_one()
    loop.run_until_complete(asyncio.sleep(0))  # tasks a phase may have created
    if args.counted:  # only this runs inside starmap_next, so callgrind counts only requests
        collections.deque(itertools.starmap(run_one, itertools.repeat((), args.counted)), maxlen=0)
        return
    prof = cProfile.Profile() if args.profile else None
    best = float("inf")
    for _ in range(5):
        if prof:
            prof.enable()
        t0 = time.process_time()
        for _ in range(args.requests // 5):
            run_one()
        best = min(best, (time.process_time() - t0) / (args.requests // 5))
        if prof:
            prof.disable()
        loop.run_until_complete(asyncio.sleep(0))
    if prof:
        prof.dump_stats(args.profile)
    print(f"{label}: {best * 1e6:.2f} us of Python per request (best of 5)")


def main() -> None:
    args = arguments()
    loop, worker, server, client_t, conn, up_t, request = setup(args.snapshot, args.conf, args.browser, args.shm)
    conn.requests = -10**9  # never retired by upstream_keepalive_max_requests
    worker.pool.put(conn)
    if args.show:
        server.data_received(request)
        print(b"".join(up_t.out).decode())
        up_t.out.clear()
        conn.data_received(_ANSWER)
        print(b"".join(client_t.out).decode())
        client_t.out.clear()
    measure(args, loop, lambda: one(server, client_t, conn, up_t, request), args.snapshot)


if __name__ == "__main__":
    main()
