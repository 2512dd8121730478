"""Seconds from `meshway start` to the first proxied request answered (issue 17, item 6).

    .venv/bin/python bench/startup_first_request.py [--runs 5] [--admin] [--json out.json]

Each run writes a DB-less node (`database = off`, a declarative file with one service and
route to an origin this script serves on loopback, `workers = 1`, status and stream listeners
off; the Admin API off unless `--admin`) into a fresh temp prefix, then runs `meshway start`
and, from the moment it is launched, sends `GET /` to the proxy port every 2 ms (a new
connection each time) until one answers 200. It prints, per run and as the median and
minimum: `first_request_s` (launch to that 200), `cli_returned_s` (launch to `meshway start`
returning), and the load average before and after, since this is wall-clock time: on a machine
shared with other work the figures are only indicative (compare them on a quiet machine; the
minimum is the least disturbed run). The node is stopped with `meshway stop` after each run.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MESHWAY = str(Path(sys.executable).with_name("meshway"))


class _Origin(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args) -> None:  # quiet
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_node(root: Path, origin: int, proxy: int, admin: bool) -> Path:
    doc = root / "meshway.yml"
    doc.write_text('_format_version: "3.0"\nservices:\n'
                   f"- name: origin\n  url: http://127.0.0.1:{origin}\n"
                   "  routes:\n  - name: root\n    paths: [\"/\"]\n")
    conf = root / "meshway.conf"
    conf.write_text(f"prefix = {root / 'node'}\ndatabase = off\ndeclarative_config = {doc}\nworkers = 1\n"
                    f"proxy_listen = 127.0.0.1:{proxy}\nstatus_listen = off\nstream_listen = off\n"
                    f"admin_listen = {f'127.0.0.1:{free_port()}' if admin else 'off'}\n")
    return conf


def answered(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def one_run(origin: int, admin: bool, timeout: float = 30.0) -> dict:
    with tempfile.TemporaryDirectory(prefix="meshway-startup-") as tmp:
        root = Path(tmp)
        proxy = free_port()
        conf = write_node(root, origin, proxy, admin)
        prefix = str(root / "node")
        t0 = time.perf_counter()
        cli = subprocess.Popen([MESHWAY, "start", "-p", prefix, "-c", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        first = returned = None
        try:
            while time.perf_counter() - t0 < timeout:
                if returned is None and cli.poll() is not None:
                    returned = time.perf_counter() - t0
                    if cli.returncode != 0:
                        raise RuntimeError(f"meshway start failed: {cli.stderr.read().decode(errors='replace')[-400:]}")
                if first is None and answered(proxy):
                    first = time.perf_counter() - t0
                if first is not None and returned is not None:
                    break
                time.sleep(0.002)
            if first is None:
                raise RuntimeError(f"no 200 within {timeout} s of meshway start")
        finally:
            cli.wait(timeout)
            subprocess.run([MESHWAY, "stop", "-p", prefix], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60)
        if returned is None:
            returned = time.perf_counter() - t0  # it returned while the last request was answered
        return {"first_request_s": round(first, 3), "cli_returned_s": round(returned, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--admin", action="store_true", help="with the Admin API listening (a default node has it)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    origin = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    load_before = os.getloadavg()
    try:
        runs = [one_run(origin.server_address[1], args.admin) for _ in range(args.runs)]
    finally:
        origin.shutdown()
    load_after = os.getloadavg()
    for i, run in enumerate(runs):
        print(f"run {i + 1}: first request {run['first_request_s']:.3f} s, meshway start returned {run['cli_returned_s']:.3f} s")
    result = {key: {"median": round(statistics.median(r[key] for r in runs), 3), "min": min(r[key] for r in runs)}
              for key in ("first_request_s", "cli_returned_s")}
    result["loadavg_before"], result["loadavg_after"] = load_before, load_after
    result["runs"] = runs
    print(f"first request: median {result['first_request_s']['median']:.3f} s, min {result['first_request_s']['min']:.3f} s; "
          f"meshway start returned: median {result['cli_returned_s']['median']:.3f} s "
          f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; {os.cpu_count()} CPUs)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
