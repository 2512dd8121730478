"""The Python cost per request of each plugin of the `plugins` scenario, alone and together:
hotpath_micro's fake-transport loop over snapshots that differ only in their plugins.

    .venv/bin/python bench/plugins_micro.py [--only none,k,r,p,P,krp,krP] [--shm] [--requests 50000] [--profile out.prof]
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=starmap_next \
        .venv/bin/python bench/plugins_micro.py --only krp --counted 2000

Variants: letters name the plugins on the route's service (`k` key-auth, `r` rate-limiting with
policy local and a limit never reached, `R` response-ratelimiting with policy local and a limit
never reached) and global (`p` prometheus with Kong's defaults, i.e.
no metric enabled, as in the benchmark; `P` prometheus with status code, latency and bandwidth
metrics). `none` is the same route and request with no plugin. `--shm` attaches the node-wide
shared-memory counters (as a worker under a master does) instead of the in-process table.
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

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE), str(HERE.parent / "src")]

import hotpath_micro  # noqa: E402

_METRICS = {"status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True}


def snapshot_for(variant: str) -> dict:
    from meshbench.meshway import BENCH_KEY, declarative, service
    from meshway.model import parse_declarative

    on_service = []
    if "k" in variant:
        on_service.append({"name": "key-auth", "config": {"key_names": ["apikey"]}})
    if "r" in variant:
        on_service.append({"name": "rate-limiting", "config": {"second": 100_000_000, "policy": "local"}})
    if "R" in variant:
        on_service.append({"name": "response-ratelimiting", "config": {"limits": {"videos": {"second": 100_000_000}}}})
    glob = [{"name": "prometheus"}] if "p" in variant else []
    glob += [{"name": "prometheus", "config": _METRICS}] if "P" in variant else []
    svc = service("guarded", 9, [{"name": "guarded-root", "paths": ["/"]}], on_service)
    consumers = [{"username": "bench", "keyauth_credentials": [{"key": BENCH_KEY}]}]
    return parse_declarative(declarative([svc], consumers, glob))


def measure(variant: str, requests: int, counted: int, profile: str | None = None) -> float | None:
    hotpath_micro._snapshot = lambda _kind, _origin: snapshot_for(variant)
    loop, worker, server, client_t, conn, up_t, request = hotpath_micro.setup("plugins")
    conn.requests = -10**9
    worker.pool.put(conn)
    args = (server, client_t, conn, up_t, request)
    for _ in range(2000):
        hotpath_micro.one(*args)
    loop.run_until_complete(asyncio.sleep(0))
    if counted:
        collections.deque(itertools.starmap(hotpath_micro.one, itertools.repeat(args, counted)), maxlen=0)
        return None
    prof = hotpath_micro.cProfile.Profile() if profile else None
    best = float("inf")
    for _ in range(5):
        if prof:
            prof.enable()
        t0 = time.process_time()
        for _ in range(requests // 5):
            hotpath_micro.one(*args)
        best = min(best, (time.process_time() - t0) / (requests // 5))
        if prof:
            prof.disable()
        loop.run_until_complete(asyncio.sleep(0))
    if prof:
        prof.dump_stats(profile)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="none,k,r,p,P,krp,krP")
    ap.add_argument("--shm", action="store_true")
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--profile", help="cProfile the (last) variant into this file")
    ap.add_argument("--counted", type=int, default=0, help="run N requests of the one variant in starmap (callgrind)")
    args = ap.parse_args()
    if args.shm:
        from meshway.plugins import attach_shared_memory

        attach_shared_memory(Path(tempfile.mkdtemp(prefix="meshway-micro-shm-")), 0, 1)
    variants = args.only.split(",")
    for variant in variants:
        us = measure("" if variant == "none" else variant, args.requests, args.counted, args.profile)
        if us is not None:
            print(f"{variant:5s} {'shm' if args.shm else 'local'}: {us:.2f} us of Python per request (best of 5)")


if __name__ == "__main__":
    main()
