"""A burst of new connections to a freshly started proxy: how long the last clients wait.

    .venv/bin/python bench/accept_burst.py [--conns 1000] [--requests 20] [--rounds 3]

Each round starts nginx (1 worker, upstream keepalive) and a meshway node (workers = 1) fresh,
pinned to the proxy core as in `bench/run.sh`, with the nginx origin and this client on the
load core. The client opens `--conns` connections at once; each sends `--requests` requests in
turn. Printed per proxy (median over rounds): the time from a client's connect to its first
answer (p50/p99/max: the accept queue, the first upstream connects) and the latency of every
request (p50/p99), first against the fresh proxy, then again on the same, warm proxy.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from meshbench.burst import burst  # noqa: E402
from meshbench.meshway import MeshwayNode, base_services, declarative  # noqa: E402
from meshbench.procs import free_port  # noqa: E402
from meshbench.servers import start_nginx_proxy, start_origin  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="meshway-burst-") as tmp:
        workdir = Path(tmp)
        origin, origin_port = start_origin(workdir)
        try:
            for r in range(args.rounds):
                nginx, nginx_port, _ = start_nginx_proxy(workdir, origin_port, origin_port, name=f"nginx{r}")
                try:
                    runs.setdefault("nginx fresh", []).append(burst(nginx_port, args.conns, args.requests))
                    runs.setdefault("nginx warm", []).append(burst(nginx_port, args.conns, args.requests))
                finally:
                    nginx.stop()
                port = free_port()
                node = MeshwayNode(workdir, f"m{r}", declarative(base_services(origin_port, origin_port)),
                                   {"proxy_listen": f"127.0.0.1:{port}", "proxy_access_log": "off"})
                node.start()
                try:
                    time.sleep(0.5)  # the worker has applied its config: `start` returns when it listens
                    runs.setdefault("meshway fresh", []).append(burst(port, args.conns, args.requests))
                    runs.setdefault("meshway warm", []).append(burst(port, args.conns, args.requests))
                finally:
                    node.stop()
        finally:
            origin.stop()
    print(f"{args.conns} new connections at once, {args.requests} requests each; median of {args.rounds} rounds (ms)")
    print(f"{'proxy':<15}{'first p50':>10}{'first p99':>10}{'first max':>10}{'all p50':>9}{'all p99':>9}")
    for name, figs in runs.items():
        med = {k: statistics.median(f[k] for f in figs) for k in figs[0]}
        print(f"{name:<15}{med['first_p50_ms']:>10.0f}{med['first_p99_ms']:>10.0f}{med['first_max_ms']:>10.0f}"
              f"{med['p50_ms']:>9.0f}{med['p99_ms']:>9.0f}")


if __name__ == "__main__":
    main()
