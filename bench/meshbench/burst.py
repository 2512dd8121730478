"""A burst of new connections: every client connects at once and sends its requests in turn.

Shared by the `burst` scenario of `bench/run.sh` and by `bench/accept_burst.py`. The client runs
on the load core; it reports, per connection, the time from its connect to its first answer
(the accept queue and the first upstream connects) and the latency of every request.
"""
from __future__ import annotations

import json
import subprocess
import sys

from .procs import CORE_LOAD

_CLIENT = r"""
import asyncio, json, sys, time
import uvloop

async def one(port, requests, out):
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for k in range(requests):
        sent = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        await reader.readuntil(b"hello")
        now = time.monotonic()
        out["latency"].append(now - sent)
        if k == 0:
            out["first"].append(now - t0)
    writer.close()

async def main(port, conns, requests):
    out = {"first": [], "latency": []}
    await asyncio.wait_for(asyncio.gather(*(one(port, requests, out) for _ in range(conns))), 120)
    print(json.dumps(out))

uvloop.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"""


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def burst(port: int, conns: int, requests: int) -> dict:
    """One burst against 127.0.0.1:port; milliseconds."""
    cmd = ["taskset", "-c", CORE_LOAD, sys.executable, "-c", _CLIENT, str(port), str(conns), str(requests)]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=180).stdout)
    first, lat = out["first"], out["latency"]
    return {"first_p50_ms": round(_pct(first, 0.5), 1), "first_p99_ms": round(_pct(first, 0.99), 1),
            "first_max_ms": round(max(first) * 1000, 1),
            "p50_ms": round(_pct(lat, 0.5), 2), "p99_ms": round(_pct(lat, 0.99), 2)}
