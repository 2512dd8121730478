"""`meshway start` wall time and the idle RSS of its processes (issue 6 targets).

    .venv/bin/python bench/startup_rss.py [--runs 5] [--workers 1] [--fresh] [--settle 1.0]

Each run starts a node with a temp prefix (SQLite, the test helper's listeners: HTTP, HTTPS +
HTTP/2, Admin API, status), times `meshway start` until it prints `meshway started`, lets the
node sit idle for `--settle` seconds, reads VmRSS of the master and each worker from
/proc/<pid>/status, and stops it. Without `--fresh` the prefix is made (database bootstrapped)
by a first, untimed start, as on a node that restarts; `--fresh` times the first start.
Prints the median (and min/max) of each figure.
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
import time
from pathlib import Path

MESHWAY = str(Path(sys.executable).with_name("meshway"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_conf(root: Path, workers: int) -> Path:
    conf = root / "meshway.conf"
    p = [free_port() for _ in range(4)]
    conf.write_text(
        f"admin_listen = 127.0.0.1:{p[0]}\n"
        f"proxy_listen = 127.0.0.1:{p[1]}, 127.0.0.1:{p[2]} ssl http2\n"
        f"status_listen = 127.0.0.1:{p[3]}\n"
        "cluster_listen = off\n"
        f"workers = {workers}\n"
    )
    return conf


def cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
    t0 = time.perf_counter()
    result = subprocess.run([MESHWAY, *args], capture_output=True, text=True, env=env, timeout=60)
    return time.perf_counter() - t0, result


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d.name))
    return sorted(out)


def one_run(root: Path, conf: Path, settle: float) -> dict:
    prefix = root / "prefix"
    elapsed, result = cli("start", "-p", str(prefix), "-c", str(conf))
    if result.returncode != 0 or "meshway started" not in result.stdout:
        raise SystemExit(f"start failed: {result.stdout}{result.stderr}")
    try:
        time.sleep(settle)
        master = int((prefix / "pids" / "meshway.pid").read_text())
        workers = children(master)
        return {"start_s": elapsed, "master_kb": rss_kb(master), "worker_kb": [rss_kb(w) for w in workers]}
    finally:
        cli("stop", "-p", str(prefix), "-c", str(conf))


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--fresh", action="store_true", help="time the first start of a new prefix")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            conf = write_conf(root, args.workers)
            if not args.fresh:
                one_run(root, conf, 0)
            runs.append(one_run(root, conf, args.settle))
    start = [r["start_s"] for r in runs]
    master = [r["master_kb"] / 1024 for r in runs]
    worker = [kb / 1024 for r in runs for kb in r["worker_kb"]]
    if args.json:
        print(json.dumps(runs))
    print(f"meshway start (s):   {summary(start)}")
    print(f"master RSS (MB):     {summary(master)}")
    print(f"idle worker RSS (MB): {summary(worker)}")


if __name__ == "__main__":
    main()
