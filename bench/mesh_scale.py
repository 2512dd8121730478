"""A mesh control plane with N simulated `meshway dp run` data planes: memory and fan-out.

A real `meshway start` control plane (role control_plane, SQLite, default settings otherwise)
serves `mesh_dp_listen`. W worker processes open N/W light clients that speak `dp run`'s real
protocol: TLS to the control plane (the mesh CA checked), a `hello` with a dataplane token made
by the Admin API (`POST /tokens/dataplane`) and a Dataplane resource (one inbound, 50 services
shared by the data planes) and `delta: true` (incremental pushes, as `dp run` asks), then every
config frame, whole or delta, answered with `applied`, as a data plane does.
The control plane registers each one (stored Dataplane, insight) and pushes the mesh to all.

Measured:
- `connect_all_s`: from the first connection until every data plane has a configuration that
  lists all N Dataplanes (registration and the pushes it causes);
- the control plane's memory (RSS of its process tree, from /proc) before any data plane and
  once all are settled: `cp_rss_per_dp_kb` is the difference divided by N;
- a change (a MeshTrafficPermission applied through the Admin API): time from the Admin API
  request until each data plane received the new configuration, p50/p99/max (from the request,
  not the answer: with many data planes the control plane pushes before it answers), and the
  control plane's CPU seconds from the change until all data planes acknowledged it (and settled:
  2 s without news), also net of what it spends idle (measured over IDLE_S s just before);
- the size of the change's frame (compressed; a delta: what changed since the version each data
  plane runs) and how many bytes all data planes received.

    .venv/bin/python bench/mesh_scale.py [--dps 1000] [--workers 2]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MESHWAY = str(Path(sys.executable).with_name("meshway"))
SERVICES = 50
IDLE_S = 5.0  # seconds of quiet before the change, to take the control plane's idle CPU out of the change's
sys.path.insert(0, str(HERE))

from cluster_scale import _percentile  # noqa: E402
from hybrid_scale import _free_port, _http  # noqa: E402


def _hash_of(frame: bytes) -> str:
    """The config hash at the head of a frame, without inflating the rest (cheap for 2 shared cores)."""
    head = zlib.decompressobj().decompress(frame, 96).decode(errors="replace")
    key = '"config_hash":"'
    at = head.find(key)
    return head[at + len(key):at + len(key) + 32] if at >= 0 else ""


def _dataplane(i: int) -> dict:
    return {"type": "Dataplane", "mesh": "default", "name": f"sim-{i}",
            "networking": {"address": "127.0.0.1",
                           "inbound": [{"port": 20000 + i, "servicePort": 30000 + i,
                                        "tags": {"kuma.io/service": f"svc-{i % SERVICES}",
                                                 "kuma.io/protocol": "http"}}]}}


# ---------------------------------------------------------------- worker: simulated data planes
async def _one_dp(port: int, ctx: ssl.SSLContext, index: int, token: str, state: dict, gate: asyncio.Semaphore) -> None:
    from websockets.asyncio.client import connect

    from meshway import __version__
    from meshway.cluster._protocol import encode_message

    async with gate:
        ws = await connect(f"wss://127.0.0.1:{port}/v1/outlet", ssl=ctx, proxy=None, compression=None,
                           max_size=None, open_timeout=120)
        node_id = str(uuid.uuid4())
        await ws.send(encode_message("hello", node_id=node_id, hostname=f"sim-{index}", version=__version__,
                                     labels={}, config_hash="0" * 32, heartbeat=30, token=token,
                                     dataplane=_dataplane(index), mesh="default", name=f"sim-{index}", delta=True))
    frames = state["frames"][index]
    try:
        async for message in ws:
            if isinstance(message, bytes):
                config_hash = _hash_of(message)
                frames.append((time.monotonic(), config_hash, len(message)))
                await ws.send(encode_message("applied", config_hash=config_hash, ms=0.1))
    finally:
        await ws.close()


async def _worker(port: int, first: int, count: int, ca: str, tokens_file: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False
    tokens = json.loads(Path(tokens_file).read_text())
    state = {"frames": {first + i: [] for i in range(count)}}
    gate = asyncio.Semaphore(16)  # connect in waves: don't overflow the listen backlog
    tasks = [asyncio.create_task(_one_dp(port, ctx, first + i, tokens[first + i], state, gate)) for i in range(count)]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"started": True}), flush=True)
    while True:  # the driver asks; we answer from what arrived
        line = (await reader.readline()).decode().strip()
        if not line or line == "stop":
            break
        if line == "status":
            last = {i: (f[-1][1] if f else "") for i, f in state["frames"].items()}
            errors = [repr(t.exception()) for t in tasks if t.done() and not t.cancelled() and t.exception()]
            print(json.dumps({"last": last, "errors": errors[:3], "done": sum(t.done() for t in tasks)}), flush=True)
        elif line.startswith("since "):
            t0 = float(line.split()[1])
            out = {i: [[at, h, size] for at, h, size in f if at >= t0] for i, f in state["frames"].items()}
            total = sum(size for f in state["frames"].values() for _, _, size in f)
            print(json.dumps({"frames": out, "bytes_received": total}), flush=True)
    for t in tasks:
        t.cancel()


# ---------------------------------------------------------------- control plane and measurement
def _tree_rss_kb(pid: int) -> int:
    """RSS of a process and all its descendants (kB), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo += children.get(p, [])
    return total


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (from /proc; threads included)."""
    total, todo = 0.0, [pid]
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
        todo += children.get(p, [])
    return total


def _ask(workers: list, line: str) -> list[dict]:
    for w in workers:
        w.stdin.write(line + "\n")
        w.stdin.flush()
    return [json.loads(w.stdout.readline()) for w in workers]


def _settled(workers: list, dps: int, timeout: float, old: str | None = None) -> tuple[str | None, float]:
    """Wait until every data plane has the same last hash (not `old`), unchanged for 2 s: (hash, when)."""
    t_end, stable_since, seen = time.monotonic() + timeout, None, None
    while time.monotonic() < t_end:
        replies = _ask(workers, "status")
        last = [h for r in replies for h in r["last"].values()]
        errors = [e for r in replies for e in r["errors"]]
        if errors:
            raise SystemExit(f"simulated data planes failed: {errors}")
        common = last[0] if last and len(last) == dps and all(h == last[0] and h for h in last) else None
        common = None if common == old else common
        if common is not None and common == seen:
            if time.monotonic() - stable_since >= 2.0:
                return common, stable_since
        else:
            seen, stable_since = common, time.monotonic()
        time.sleep(0.5)
    return None, time.monotonic()


PERMISSION = {"type": "MeshTrafficPermission", "name": "allow-all", "mesh": "default",
              "spec": {"targetRef": {"kind": "Mesh"},
                       "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}}


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="mesh-scale-"))
    admin, dp_port = _free_port(), _free_port()
    conf = tmp / "cp.conf"
    conf.write_text(f"role = control_plane\nadmin_listen = 127.0.0.1:{admin}\nmesh_dp_listen = 127.0.0.1:{dp_port}\n"
                    "proxy_listen = off\nstatus_listen = off\ncluster_listen = off\nlog_level = warn\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
    started = subprocess.run([MESHWAY, "start", "-p", str(tmp / "cp"), "-c", str(conf)], capture_output=True,
                             text=True, env=env)
    if started.returncode != 0:
        raise SystemExit(f"control plane did not start: {started.stderr}")
    workers: list = []
    try:
        cp_pid = int((tmp / "cp" / "pids" / "meshway.pid").read_text())
        t_tokens = time.monotonic()
        tokens = [_http("POST", f"http://127.0.0.1:{admin}/tokens/dataplane",
                        {"name": f"sim-{i}", "mesh": "default", "validFor": "24h"})[1] for i in range(args.dps)]
        tokens_s = time.monotonic() - t_tokens
        tokens_file = tmp / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        time.sleep(1.0)
        rss_before = _tree_rss_kb(cp_pid)
        ca = str(tmp / "cp" / "mesh" / "ca.crt")
        share = [args.dps // args.workers + (1 if i < args.dps % args.workers else 0) for i in range(args.workers)]
        firsts = [sum(share[:i]) for i in range(args.workers)]
        t_connect = time.monotonic()
        workers = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(dp_port),
                                     str(first), str(n), ca, str(tokens_file)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True) for first, n in zip(firsts, share)]
        for w in workers:
            json.loads(w.stdout.readline())
        settled_hash, settled_at = _settled(workers, args.dps, args.timeout)
        if settled_hash is None:
            raise SystemExit(f"the {args.dps} data planes did not settle on one configuration in {args.timeout} s")
        connect_s = settled_at - t_connect
        time.sleep(2.0)
        rss_after = _tree_rss_kb(cp_pid)
        idle_at, idle_cpu = time.monotonic(), _tree_cpu_s(cp_pid)
        time.sleep(IDLE_S)  # what the control plane spends with nothing changing (heartbeats, loops)
        cpu_before = _tree_cpu_s(cp_pid)
        sims_before = sum(_tree_cpu_s(w.pid) for w in workers)
        idle_rate = (cpu_before - idle_cpu) / (time.monotonic() - idle_at)
        t0 = time.monotonic()  # from the request: the control plane may push before it answers
        code, _ = _http("PUT", f"http://127.0.0.1:{admin}/meshes/default/meshtrafficpermissions/allow-all", PERMISSION)
        api_s = time.monotonic() - t0
        assert code in (200, 201), code
        changed_hash, _ = _settled(workers, args.dps, args.timeout, old=settled_hash)
        cpu_change = _tree_cpu_s(cp_pid) - cpu_before
        sims_cpu = sum(_tree_cpu_s(w.pid) for w in workers) - sims_before
        cpu_net = cpu_change - idle_rate * (time.monotonic() - t0)
        replies = _ask(workers, f"since {t0}")
        arrivals, sizes = [], []
        for r in replies:
            for frames in r["frames"].values():
                hit = next((f for f in frames if f[1] == changed_hash), None)
                if hit is not None:
                    arrivals.append(hit[0] - t0)
                    sizes.append(hit[2])
        received_total = sum(r["bytes_received"] for r in replies)
    finally:
        for w in workers:
            try:
                w.stdin.write("stop\n")
                w.stdin.flush()
            except OSError:
                pass
        for w in workers:
            w.wait(30)
        subprocess.run([MESHWAY, "stop", "-p", str(tmp / "cp")], capture_output=True, env=env)
    return {
        "data_planes": args.dps, "workers": args.workers, "services": min(SERVICES, args.dps),
        "tokens_s": round(tokens_s, 2), "connect_all_s": round(connect_s, 2),
        "cp_rss_before_kb": rss_before, "cp_rss_after_kb": rss_after,
        "cp_rss_per_dp_kb": round((rss_after - rss_before) / args.dps, 1),
        "change_received": len(arrivals), "change_p50_s": round(_percentile(arrivals, 50), 3) if arrivals else None,
        "change_p99_s": round(_percentile(arrivals, 99), 3) if arrivals else None,
        "change_max_s": round(max(arrivals), 3) if arrivals else None,
        "cp_cpu_s_for_the_change": round(cpu_change, 2), "cp_cpu_s_idle_per_s": round(idle_rate, 3),
        "cp_cpu_s_for_the_change_net": round(cpu_net, 2), "simulated_dps_cpu_s_for_the_change": round(sims_cpu, 2), "admin_api_answer_s": round(api_s, 3),
        "config_frame_bytes": max(sizes) if sizes else None, "bytes_received_all_dps": received_total,
        "note": "simulated data planes share this machine's cores with the control plane; incremental pushes (delta)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        port, first, count, ca, tokens = sys.argv[2:7]
        asyncio.run(_worker(int(port), int(first), int(count), ca, tokens))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dps", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = run(args)
    out = Path(args.out or HERE / "results" / f"mesh_scale_{args.dps}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
