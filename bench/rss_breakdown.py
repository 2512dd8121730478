"""The bench `rss` scenario's idle worker, measured the same way and broken down by mapping.

    .venv/bin/python bench/rss_breakdown.py [--runs 3] [--conf http1_impl=python ...] [--json out.json]

Starts the nginx origin (`meshbench`) and a node as `scenarios_node.rss` does (`MeshwayNode`:
DB-less, `workers = 1`, one plain listener, the 1-route document), waits for the first 200, sleeps
1 s (the scenario's "idle"), then reads the worker's VmRSS (what the scenario reports), PSS, and
/proc/PID/smaps grouped: the heap ([heap] + anonymous mappings: pymalloc's arenas and malloc's),
libpython, libcrypto/libssl, meshway's compiled extensions, other extension modules (.so under
site-packages or lib-dynload), other shared libraries, the rest. Prints the median of each figure
over --runs starts. With RSS_HOLD=FILE in the environment the first node stays up until FILE is
removed (to look at the worker with gdb, /proc or an injected sitecustomize).

meshway's bytecode is written first (`meshbench.meshway.compile_bytecode`, as `run.py` does) and
PYTHONDONTWRITEBYTECODE is dropped from the node's environment: an installed package has its
bytecode. `--no-bytecode` does neither, to see what a worker that compiles its modules at start
holds (where no `__pycache__` is there, or it is older than the sources).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from meshbench.meshway import MeshwayNode, base_services, compile_bytecode, declarative  # noqa: E402
from meshbench.procs import free_port, rss_bytes, wait_http  # noqa: E402
from meshbench.servers import start_origin  # noqa: E402

MIB = 2**20
HOLD = os.environ.get("RSS_HOLD")  # a file: keep the node up until it is removed (to inspect it)


def _group(path: str) -> str:
    if path in ("", "[heap]") or path.startswith("[anon"):
        return "heap+anon"
    if path.startswith("["):
        return "other"
    name = path.rsplit("/", 1)[-1]
    if "libpython" in name or "/bin/python" in path:
        return "interpreter"
    if name.startswith(("libcrypto", "libssl")):
        return "libcrypto+libssl"
    if "/meshway/" in path and name.endswith(".so"):
        return "meshway extensions"
    if ".cpython-" in name or "lib-dynload" in path or "site-packages" in path:
        return "other extensions"
    if ".so" in name:
        return "shared libraries"
    return "other files"


def smaps_groups(pid: int) -> dict[str, dict[str, int]]:
    """Rss/Pss/Private per mapping group, in bytes (from /proc/PID/smaps)."""
    groups: dict[str, dict[str, int]] = {}
    cur = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if not head:
            continue
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            cur = groups.setdefault(_group(head[5] if len(head) > 5 else ""), {"rss": 0, "pss": 0, "private": 0})
        elif cur is not None and head[0] in ("Rss:", "Pss:", "Private_Clean:", "Private_Dirty:"):
            key = {"Rss:": "rss", "Pss:": "pss"}.get(head[0], "private")
            cur[key] += int(head[1]) * 1024
    return groups


def rollup(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        out[k.strip()] = int(v.split()[0]) * 1024
    return out


def one_run(work: Path, origin_port: int, conf: dict[str, str], i: int) -> dict:
    port = free_port()
    node = MeshwayNode(work, f"rss{i}", declarative(base_services(origin_port, origin_port)),
                       {"proxy_listen": f"127.0.0.1:{port}", **conf})
    node.start()
    try:
        ok, why = wait_http(port, 30)
        assert ok, why
        time.sleep(1.0)  # as scenarios_node._rss_of
        pid = max(node.worker_pids(), key=rss_bytes)
        fig = {"vmrss": rss_bytes(pid)}
        roll = rollup(pid)
        fig.update(pss=roll["Pss"], anon=roll["Anonymous"], private=roll["Private_Clean"] + roll["Private_Dirty"])
        for name, g in smaps_groups(pid).items():
            fig[f"{name} rss"] = g["rss"]
        if HOLD:
            print(f"worker {pid} held; remove {HOLD} to stop", flush=True)
            Path(HOLD).touch()
            while Path(HOLD).exists():
                time.sleep(0.5)
        return fig
    finally:
        node.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conf", action="append", default=[], help="extra node setting k=v")
    ap.add_argument("--no-bytecode", action="store_true", help="no bytecode written first; keep PYTHONDONTWRITEBYTECODE")
    ap.add_argument("--json")
    args = ap.parse_args()
    if not args.no_bytecode:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        compile_bytecode()
    conf = dict(kv.split("=", 1) for kv in args.conf)
    runs = []
    with tempfile.TemporaryDirectory(prefix="meshway-rss-") as tmp:
        work = Path(tmp)
        origin, origin_port = start_origin(work)
        try:
            for i in range(args.runs):
                runs.append(one_run(work, origin_port, conf, i))
        finally:
            origin.stop()
    keys = sorted({k for r in runs for k in r}, key=lambda k: (k not in ("vmrss", "pss", "anon", "private"), k))
    med = {k: statistics.median(r.get(k, 0) for r in runs) for k in keys}
    for k in keys:
        print(f"{k:28} {med[k] / MIB:7.2f} MiB   runs: " + " ".join(f"{r.get(k, 0) / MIB:.2f}" for r in runs))
    print(f"VmRSS median {med['vmrss'] / 1e6:.2f} MB (target < 30 MB)")
    if args.json:
        Path(args.json).write_text(json.dumps({"conf": conf, "runs": runs, "median": med}, indent=2))


if __name__ == "__main__":
    main()
