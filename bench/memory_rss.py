"""Worker memory per connection, next to nginx's: idle connections, slow readers, and what is left
after they close (issue 18, item 7). Memory, unlike throughput, reads the same on a shared machine.

    .venv/bin/python bench/memory_rss.py [--conns 1000] [--slow 1000] [--no-nginx] [--json out.json]

Starts the nginx origin (`meshbench`; its /1m file made 16 MiB), a DB-less meshway node (`workers = 1`) and
nginx 1.22 (1 worker, proxy_pass with upstream keep-alive), both proxying to it. For each proxy,
reading VmRSS of its one worker from /proc:
1. baseline: after 200 warm-up requests on 20 connections, all closed again;
2. idle: `--conns` connections that each made one keep-alive request and now sit idle
   -> KiB per idle connection;
3. slow readers: `--slow` connections that each ask for a 16 MiB body and read nothing (their
   receive buffers shrunk to 4 KiB; more than the kernel's send buffer holds, so the rest waits
   in the proxy or, with flow control, upstream) -> KiB per slow reader;
4. after close: every connection closed, 3 s later -> MiB above the baseline.
Prints a table and, with --json, writes the figures.
"""
from __future__ import annotations

import argparse
import json
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

BODY = 16 << 20
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from meshbench.meshway import MeshwayNode, base_services, declarative  # noqa: E402
from meshbench.procs import free_port, rss_bytes, wait_http  # noqa: E402
from meshbench.servers import start_nginx_proxy, start_origin  # noqa: E402


def _connect(port: int, small_buffers: bool = False) -> socket.socket:
    s = socket.socket()
    if small_buffers:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    return s


def _request(s: socket.socket, path: str = "/") -> None:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())


def _read_response(s: socket.socket) -> None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += s.recv(65536)


def _settled_rss(pid: int, wait: float = 1.0, limit: float = 15.0) -> int:
    """RSS once it stops moving (two readings `wait` apart within 1%)."""
    last = rss_bytes(pid)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        time.sleep(wait)
        now = rss_bytes(pid)
        if abs(now - last) <= last / 100:
            return now
        last = now
    return last


def measure(port: int, pid: int, conns: int, slow: int) -> dict:
    warm = [_connect(port) for _ in range(20)]
    for _ in range(10):
        for s in warm:
            _request(s)
            _read_response(s)
    for s in warm:
        s.close()
    base = _settled_rss(pid)
    idle = [_connect(port) for _ in range(conns)]
    for s in idle:
        _request(s)
        _read_response(s)
    idle_rss = _settled_rss(pid)
    for s in idle:
        s.close()
    time.sleep(1)
    base2 = _settled_rss(pid)
    readers = [_connect(port, small_buffers=True) for _ in range(slow)]
    for s in readers:
        _request(s, "/1m")
    slow_rss = _settled_rss(pid, wait=2.0)
    for s in readers:
        s.close()
    time.sleep(3)
    after = _settled_rss(pid)
    kib = 1024
    return {"baseline_mib": round(base / kib / kib, 1),
            "idle_kib_per_conn": round((idle_rss - base) / conns / kib, 2),
            "slow_reader_kib_each": round((slow_rss - base2) / slow / kib, 1),
            "peak_mib": round(slow_rss / kib / kib, 1),
            "after_close_mib_above_baseline": round((after - base) / kib / kib, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=1000)
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the proxies inherit it
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="meshway-mem-") as tmp:
        work = Path(tmp)
        origin, origin_port = start_origin(work)
        (work / "origin" / "1m.bin").write_bytes(b"x" * BODY)  # /1m serves this file: a body no kernel buffer holds
        try:
            port = free_port()
            node = MeshwayNode(work, "mem", declarative(base_services(origin_port, origin_port)),
                               {"proxy_listen": f"127.0.0.1:{port}", "proxy_access_log": "off"})
            node.start()
            try:
                ok, why = wait_http(port, 20)
                assert ok, why
                results["meshway"] = measure(port, node.worker_pids()[0], args.conns, args.slow)
            finally:
                node.stop()
            if not args.no_nginx:
                proc, nport, _ = start_nginx_proxy(work, origin_port, origin_port)
                try:
                    worker = [p for p in proc.pids() if p != proc.pid]
                    results["nginx"] = measure(nport, worker[0] if worker else proc.pid, args.conns, args.slow)
                finally:
                    proc.stop()
        finally:
            origin.stop()
    keys = ["baseline_mib", "idle_kib_per_conn", "slow_reader_kib_each", "peak_mib", "after_close_mib_above_baseline"]
    print(f"{'':10}" + "".join(f"{k:>32}" for k in keys))
    for name, row in results.items():
        print(f"{name:10}" + "".join(f"{row[k]:>32}" for k in keys))
    if args.json:
        Path(args.json).write_text(json.dumps({"conns": args.conns, "slow": args.slow, **results}, indent=2))


if __name__ == "__main__":
    main()
