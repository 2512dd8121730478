"""How fast one control plane reaches N data planes after a config change.

Starts a real ClusterServer (this process) with a generated snapshot and a fresh shared cluster
certificate, then W worker processes that each open N/W light data-plane clients: raw
`websockets` clients speaking the cluster protocol over mutual TLS (hello, then wait for config
frames, decompress and parse each one as a data plane would, answer `applied`). Once every client
has its first config, the config changes and `notify_changed()` is called; each client records
when the new hash arrived. Latencies (CLOCK_MONOTONIC is system-wide, so comparable across
processes) are printed as p50/p99/max and written to bench/results/cluster_scale.json.

    .venv/bin/python bench/cluster_scale.py [--dps 500] [--workers 2] [--services 200]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent


def snapshot_for_bench(services: int, version: int) -> tuple[dict, str]:
    import hashlib

    svcs = [{"id": str(uuid.UUID(int=i)), "name": f"svc{i}", "protocol": "http", "host": f"h{i}.internal",
             "port": 80, "path": None, "retries": 5, "connect_timeout": 60000, "read_timeout": 60000,
             "write_timeout": 60000, "tags": [f"v{version}"], "enabled": True} for i in range(services)]
    routes = [{"id": str(uuid.UUID(int=10**6 + i)), "name": f"r{i}", "paths": [f"/api/{i}"], "hosts": None,
               "methods": None, "protocols": ["http", "https"], "strip_path": True, "preserve_host": False,
               "service": {"id": s["id"]}} for i, s in enumerate(svcs)]
    snap = {"_format_version": "3.0", "services": svcs, "routes": routes, "upstreams": [], "targets": [],
            "consumers": [], "plugins": [], "certificates": [], "snis": [], "ca_certificates": []}
    return snap, hashlib.md5(json.dumps(snap, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---------------------------------------------------------------- worker: simulated data planes
async def _one_dp(port: int, ctx: ssl.SSLContext, initial: str, got_first: asyncio.Event, arrivals: list,
                  done: asyncio.Event, gate: asyncio.Semaphore) -> None:
    from websockets.asyncio.client import connect

    from meshway import __version__
    from meshway.cluster._protocol import decode_config, encode_message

    async with gate:
        ws = await connect(f"wss://127.0.0.1:{port}/v1/outlet", ssl=ctx, proxy=None, compression=None,
                           max_size=None, open_timeout=60)
    node_id = str(uuid.uuid4())
    await ws.send(encode_message("hello", node_id=node_id, hostname=f"sim-{node_id[:8]}", version=__version__,
                                 labels={}, config_hash="0" * 32, heartbeat=30))
    try:
        frame = await ws.recv()
        _, config_hash = decode_config(frame)
        assert config_hash == initial, config_hash
        await ws.send(encode_message("applied", config_hash=config_hash, ms=0.1))
        got_first.set()
        # Timestamp on arrival and check the hash once all have arrived: the simulated DPs share
        # two cores, so decoding here would charge every DP for the others' JSON parsing, while a
        # real DP parses on its own CPU.
        frame = await ws.recv()
        arrivals.append((time.monotonic(), frame))
    finally:
        done.set()
        await ws.close()


async def _worker(port: int, count: int, cert: str, key: str, initial: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cert)
    ctx.check_hostname = False
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    gate = asyncio.Semaphore(32)  # connect in waves: don't overflow the listen backlog
    firsts = [asyncio.Event() for _ in range(count)]
    dones = [asyncio.Event() for _ in range(count)]
    arrivals: list[float] = []
    tasks = [asyncio.create_task(_one_dp(port, ctx, initial, firsts[i], arrivals, dones[i], gate)) for i in range(count)]
    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in firsts)), 120)
    print(json.dumps({"ready": time.monotonic() - t0}), flush=True)
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in dones)), 120)
    errors = [repr(t.exception()) for t in tasks if t.done() and t.exception()]
    from meshway.cluster._protocol import decode_config

    t1 = time.monotonic()
    good = [at for at, frame in arrivals if decode_config(frame)[1] != initial]
    decode_ms = (time.monotonic() - t1) * 1000 / max(1, len(arrivals))
    print(json.dumps({"arrivals": good, "errors": errors[:5], "decode_ms": decode_ms}), flush=True)


# ---------------------------------------------------------------- control plane and measurement
def _percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))]


async def _run(args: argparse.Namespace) -> dict:
    from meshway.cluster import ClusterServer
    from meshway.pki import gen_cluster_cert
    from meshway.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    cert, key = tmp / "cluster.crt", tmp / "cluster.key"
    gen_cluster_cert(cert, key)
    state = {"version": 1}
    get_snapshot = lambda: snapshot_for_bench(args.services, state["version"])  # noqa: E731
    settings = load_settings(env={}, overrides={"prefix": str(tmp), "cluster_cert": str(cert), "cluster_cert_key": str(key)})
    server = ClusterServer(settings, get_snapshot=get_snapshot)
    await server.start("127.0.0.1", 0)
    port, initial = server.address[1], server.config_hash
    share = [args.dps // args.workers + (1 if i < args.dps % args.workers else 0) for i in range(args.workers)]
    workers = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--worker", str(port), str(n), str(cert), str(key), initial,
        stdout=asyncio.subprocess.PIPE) for n in share]
    t_connect = time.monotonic()
    ready = [json.loads(await asyncio.wait_for(w.stdout.readline(), 180)) for w in workers]
    connect_s = time.monotonic() - t_connect
    await asyncio.sleep(0.5)  # let `applied` reports land so the CP is idle when we measure
    state["version"] = 2
    t0 = time.monotonic()
    server.notify_changed()
    results = [json.loads(await asyncio.wait_for(w.stdout.readline(), 180)) for w in workers]
    for w in workers:
        await w.wait()
    listed = len(server.data_planes())
    await server.stop()
    latencies = [a - t0 for r in results for a in r["arrivals"]]
    snap, _ = snapshot_for_bench(args.services, 2)
    from meshway.cluster._protocol import encode_config

    return {
        "data_planes": args.dps, "workers": args.workers, "received": len(latencies), "listed_by_cp": listed,
        "snapshot_bytes": len(json.dumps(snap)), "frame_bytes": len(encode_config(snap, "x")),
        "connect_all_s": round(connect_s, 3), "worker_ready_s": [round(r["ready"], 3) for r in ready],
        "p50_s": round(_percentile(latencies, 50), 4), "p99_s": round(_percentile(latencies, 99), 4),
        "max_s": round(max(latencies), 4), "min_s": round(min(latencies), 4),
        "dp_decode_ms_each": round(statistics.mean(r["decode_ms"] for r in results), 3), "errors": [e for r in results for e in r["errors"]],
        "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        port, count, cert, key, initial = sys.argv[2:7]
        asyncio.run(_worker(int(port), int(count), cert, key, initial))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dps", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--out", default=str(HERE / "results" / "cluster_scale.json"))
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_run(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['received']}/{args.dps} data planes got the new config "
          f"(snapshot {result['snapshot_bytes']} B, frame {result['frame_bytes']} B): "
          f"p50 {result['p50_s'] * 1000:.0f} ms, p99 {result['p99_s'] * 1000:.0f} ms, max {result['max_s'] * 1000:.0f} ms; "
          f"target p99 < 2 s: {'met' if result['p99_s'] < 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
