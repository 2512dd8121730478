"""What the slowest 1% of unloaded requests are made of (the `unloaded` scenario's added p99).

    .venv/bin/python bench/p99_probe.py [--requests 30000] [--rounds 3] [--out FILE] [--env K=V ...]

The bench's set-up (bench/meshbench): the nginx origin on the load core, a meshway node with the
bench's 1-route config (`workers = 1`, access log on) pinned to the proxy core, and nginx as a
proxy the same way; a client on the load core sends one request at a time on one keep-alive
connection, as `wrk -c1`, to meshway, nginx and the origin direct, in turn (rounds).

Per request it keeps the latency (perf_counter_ns) and, from the proxy worker's
/proc/PID/schedstat read between two requests, the CPU the worker ran for it and the time it
waited for a CPU (run-queue delay). Inside the meshway worker `bench/p99_probe/sitecustomize.py`
logs each garbage collection and periodic callback with the same clock, so each slow request
is told what ran during it. The report: percentiles per target, the added p99 over direct, and
for meshway's slowest 1%: how many overlapped a collection / callback, how much of their time
was the worker's CPU or its run-queue wait, against the median request.
"""
from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from meshbench import meshway as mw  # noqa: E402
from meshbench.lab import Lab, RunConfig, Scope  # noqa: E402
from meshbench.procs import CORE_LOAD, descendants  # noqa: E402
from meshbench.scenarios_http import meshway_target, plain_doc  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _schedstat(fd: int) -> tuple[int, int, int]:
    run, wait, slices = os.pread(fd, 100, 0).split()
    return int(run), int(wait), int(slices)


class Thrasher:
    """A process on the proxy core that evicts its caches on demand (copies 64 MiB: more than the
    L2 and the shared L3), so that the next request runs cold, as one after the core was lent out."""

    def __init__(self, core: str, mib: int = 64):
        self.go_r, self.go_w = os.pipe()
        self.ack_r, self.ack_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.go_w)  # EOF on go_r when the parent closes its end
            os.sched_setaffinity(0, {int(core)})
            src, dst = bytearray(mib << 20), bytearray(mib << 20)
            while os.read(self.go_r, 1):
                dst[:] = src
                os.write(self.ack_w, b"k")
            os._exit(0)

    def evict(self) -> None:
        os.write(self.go_w, b"g")
        os.read(self.ack_r, 1)

    def stop(self) -> None:
        os.close(self.go_w)
        os.waitpid(self.pid, 0)


def drive(port: int, count: int, worker: int | None, cold: int = 0,
          thrasher: Thrasher | None = None) -> list[tuple[int, int, int, int, int]]:
    """`count` requests, one at a time: (start_ns, latency_ns, worker cpu ns, run-queue ns, slices);
    with `cold`, every `cold`-th request runs right after the thrasher evicted the caches (its
    latency is then negated, to tell it apart)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fd = os.open(f"/proc/{worker}/schedstat", os.O_RDONLY) if worker else None
    now, send, recv = time.perf_counter_ns, sock.send, sock.recv
    out = []
    prev = _schedstat(fd) if fd is not None else (0, 0, 0)
    try:
        for i in range(count):
            evicted = cold and i % cold == cold - 1
            if evicted:
                thrasher.evict()
                prev = _schedstat(fd) if fd is not None else (0, 0, 0)
            t0 = now()
            send(REQUEST)
            data = recv(4096)
            while not data.endswith(b"hello"):  # the origin's 5-byte body ends every answer
                more = recv(4096)
                if not more:
                    raise RuntimeError(f"connection closed after {data[:200]!r}")
                data += more
            t1 = now()
            cur = _schedstat(fd) if fd is not None else (0, 0, 0)
            out.append((t0, (t0 - t1) if evicted else (t1 - t0), cur[0] - prev[0], cur[1] - prev[1], cur[2] - prev[2]))
            prev = cur
    finally:
        sock.close()
        if fd is not None:
            os.close(fd)
    return out


def pct(vals: list[int], p: float) -> float:
    s = sorted(vals)
    return s[min(len(s) - 1, int(p * len(s)))] / 1000  # µs


def events(probe_dir: Path) -> list[tuple[str, str, int, int, int]]:
    out = []
    for path in probe_dir.glob("events-*.txt"):
        for line in path.read_text().splitlines():
            kind, what, t0, t1, n = line.split()
            out.append((kind, what, int(t0), int(t1), int(n)))
    return sorted(out, key=lambda e: e[2])


def tail_report(reqs: list[tuple], evs: list[tuple], label: str) -> list[str]:
    lat = [r[1] for r in reqs]
    cut = sorted(lat)[int(0.99 * len(lat))]
    tail = [r for r in reqs if r[1] >= cut]
    body = [r for r in reqs if r[1] < cut]
    lines = [f"  {label}: {len(reqs)} requests, slowest 1% = {len(tail)} requests >= {cut / 1000:.1f} us"]

    def during(r):
        return [e for e in evs if e[2] < r[0] + r[1] and e[3] > r[0]]

    for name, group in (("slowest 1%", tail), ("other 99%", body)):
        n = len(group)
        hit = [r for r in group if during(r)]
        gc_hit = [r for r in group if any(e[0] == "gc" for e in during(r))]
        cpu = statistics.median(r[2] for r in group) / 1000
        wait = statistics.median(r[3] for r in group) / 1000
        mean_wait = statistics.fmean(r[3] for r in group) / 1000
        mean_cpu = statistics.fmean(r[2] for r in group) / 1000
        slices = statistics.fmean(r[4] for r in group)
        lines.append(f"    {name}: latency median {statistics.median(r[1] for r in group) / 1000:.1f} us; worker CPU "
                     f"median {cpu:.1f} us (mean {mean_cpu:.1f}); run-queue wait median {wait:.1f} us "
                     f"(mean {mean_wait:.1f}); worker wake-ups/request {slices:.2f}; overlapping a GC or "
                     f"timer callback: {len(hit)} ({100 * len(hit) / max(1, n):.2f}%), a GC: {len(gc_hit)}")
    kinds: dict[str, int] = {}
    for r in tail:
        for k in {f"{e[0]} {e[1]}" for e in during(r)}:
            kinds[k] = kinds.get(k, 0) + 1
    if kinds:
        lines.append("    slowest 1% overlapping each kind of event: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    cpus = [r[2] for r in reqs]
    lines.append("    worker CPU per request percentiles p50/p90/p99/p99.9/max: "
                 + " / ".join(f"{pct(cpus, p):.1f}" for p in (0.5, 0.9, 0.99, 0.999, 1.0)))
    # what the tail's extra time is: CPU of the worker above the median, run-queue wait, or neither
    med_cpu = statistics.median(r[2] for r in body)
    med_lat = statistics.median(r[1] for r in body)
    cpu_x = wait_x = other = 0
    for r in tail:
        extra = r[1] - med_lat
        c = max(0, r[2] - med_cpu)
        w = r[3]
        cpu_x += min(c, extra)
        wait_x += min(w, max(0, extra - c))
        other += max(0, extra - c - w)
    tot = max(1, cpu_x + wait_x + other)
    lines.append(f"    the slowest 1%'s time above the median request: worker CPU above its median "
                 f"{100 * cpu_x / tot:.0f}%, worker run-queue wait {100 * wait_x / tot:.0f}%, elsewhere "
                 f"(client, origin, kernel, wake-up latency) {100 * other / tot:.0f}%")
    return lines


def cold_report(runs: dict, args) -> str:
    out = [f"p99_probe --cold {args.cold}: {args.rounds} rounds x {args.requests} requests per target, every "
           f"{args.cold}th right after the proxy core's caches were evicted ({args.evict_mib} MiB copied on that core); us"]
    base = {}
    for name, rounds in runs.items():
        allr = [r for rr in rounds for r in rr]
        warm = [r for r in allr if r[1] > 0]
        cold = [r for r in allr if r[1] < 0]
        wl, cl = statistics.median(r[1] for r in warm) / 1000, statistics.median(-r[1] for r in cold) / 1000
        wc, cc = statistics.median(r[2] for r in warm) / 1000, statistics.median(r[2] for r in cold) / 1000
        base[name] = (wl, cl, wc, cc)
        out.append(f"  {name:8s} warm: latency median {wl:7.1f} worker CPU median {wc:6.1f} | cold ({len(cold)}): "
                   f"latency median {cl:7.1f} worker CPU median {cc:6.1f} | cold - warm: latency {cl - wl:6.1f} CPU {cc - wc:6.1f}")
    m, n, d = base["meshway"], base["nginx"], base["direct"]
    out.append(f"  added over direct, warm: meshway {m[0] - d[0]:.1f} nginx {n[0] - d[0]:.1f}; cold: meshway "
               f"{m[1] - d[1]:.1f} nginx {n[1] - d[1]:.1f}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm", type=int, default=5000)
    ap.add_argument("--out")
    ap.add_argument("--cold", type=int, default=0, help="only the cold-cache experiment: every Nth request cold")
    ap.add_argument("--evict-mib", type=int, default=64, help="what the cold experiment copies on the proxy core")
    ap.add_argument("--env", action="append", default=[], help="MESHWAY_K=V: setting k of the node (e.g. MESHWAY_HTTP1_IMPL=python)")
    args = ap.parse_args()
    os.sched_setaffinity(0, {int(CORE_LOAD)})
    gc.disable()
    lab = Lab(RunConfig.make(quick=True))
    probe = lab.workdir / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    os.environ["P99_PROBE_DIR"] = str(probe)
    os.environ["PYTHONPATH"] = str(HERE / "p99_probe")
    extra = dict(kv.split("=", 1) for kv in args.env)
    report: list[str] = []
    with lab, Scope(lab) as scope:
        settings = {k[8:].lower(): v for k, v in extra.items() if k.startswith("MESHWAY_")}  # not env: clean_env drops it
        target = meshway_target(scope, "plain", plain_doc(lab), extra=settings)
        if target.error:
            raise SystemExit(target.error)
        node = target.node  # type: ignore[attr-defined]
        worker = node.worker_pids()[0]
        _proc, nginx_port, _ = scope.nginx()
        nginx_worker = max(descendants([_proc.pids()[0]]) or _proc.pids())
        ports = {"meshway": (int(target.url.rsplit(":", 1)[1]), worker),
                 "nginx": (nginx_port, nginx_worker), "direct": (lab.origin_port, None)}
        others = [p for p in node.pids() if p != worker]
        runs: dict[str, list] = {k: [] for k in ports}
        for name, (port, pid) in ports.items():
            drive(port, args.warm, pid)
        other_before = {p: _schedstat(os.open(f"/proc/{p}/schedstat", os.O_RDONLY)) for p in others}
        t_start = time.monotonic()
        thrasher = Thrasher(mw.CORE_PROXY, args.evict_mib) if args.cold else None
        for _ in range(args.rounds):
            for name, (port, pid) in ports.items():
                runs[name].append(drive(port, args.requests, pid, args.cold, thrasher))
                time.sleep(0.2)
        secs = time.monotonic() - t_start
        other_after = {p: _schedstat(os.open(f"/proc/{p}/schedstat", os.O_RDONLY)) for p in others}
        evs = events(probe)
        if thrasher:
            thrasher.stop()
    if args.cold:
        text = cold_report(runs, args)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        return
    fig = {}
    report.append(f"p99_probe: {args.rounds} rounds x {args.requests} requests per target, one at a time, "
                  f"worker env {extra or 'default'}; figures in us")
    for name, rounds in runs.items():
        p50s = [pct([r[1] for r in rr], 0.5) for rr in rounds]
        p99s = [pct([r[1] for r in rr], 0.99) for rr in rounds]
        fig[name] = (statistics.median(p50s), statistics.median(p99s))
        cpu = statistics.fmean(r[2] for rr in rounds for r in rr) / 1000
        report.append(f"  {name:8s} p50 {fig[name][0]:7.1f}  p99 {fig[name][1]:7.1f}  (rounds p99 "
                      f"{', '.join(f'{p:.1f}' for p in p99s)})  worker CPU/request {cpu:.1f}")
    for p in others:
        d = [a - b for a, b in zip(other_after[p], other_before[p])]
        report.append(f"  other node process {p} on the proxy core: {d[0] / 1000 / secs:.1f} us CPU/s, "
                      f"{d[2] / secs:.1f} wake-ups/s")
    for name, rounds in runs.items():
        lat = [r[1] for rr in rounds for r in rr]
        report.append(f"  {name:8s} latency p50/p90/p95/p98/p99/p99.5: "
                      + " / ".join(f"{pct(lat, p):.1f}" for p in (0.5, 0.9, 0.95, 0.98, 0.99, 0.995)))
    for name in ("meshway", "nginx"):
        report.append(f"  added over direct: {name} p50 {fig[name][0] - fig['direct'][0]:.1f}  "
                      f"p99 {fig[name][1] - fig['direct'][1]:.1f}")
    allm = [r for rr in runs["meshway"] for r in rr]
    t_lo, t_hi = allm[0][0], allm[-1][0] + allm[-1][1]
    mev = [e for e in evs if e[3] > t_lo and e[2] < t_hi]
    by: dict[str, list[int]] = {}
    for e in mev:
        by.setdefault(f"{e[0]} {e[1]}", []).append(e[3] - e[2])
    report.append(f"  meshway worker events during its {len(allm)} measured requests (per 10,000 requests, "
                  f"median / max duration us):")
    for k, ds in sorted(by.items()):
        report.append(f"    {k:22s} {10000 * len(ds) / len(allm):8.2f}  {statistics.median(ds) / 1000:8.1f} "
                      f"{max(ds) / 1000:8.1f}")
    report += tail_report(allm, mev, "meshway")
    alln = [r for rr in runs["nginx"] for r in rr]
    report += tail_report(alln, [], "nginx")
    text = "\n".join(report)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
