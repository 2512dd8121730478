"""CPU cost per request of the HTTP/1.1 hot path: meshway next to nginx, HAProxy, the minimal
Python proxy (bench/minimal_proxy.py) and direct, measured the same way in the same run.

    .venv/bin/python bench/hotpath_cpu.py [--seconds 5] [--rounds 3] [--only meshway,nginx,...]

Each proxy is pinned to core 1 (`taskset -c 1`), wrk (`-t1 -c50`) and the nginx origin to core 0.
Per target and round: a 1 s warm-up, then a measured run; the proxy's CPU is the delta of
utime and stime in /proc/<pid>/stat over the measured run (all its processes) divided by the
requests wrk completed. CPU time, unlike req/s, barely depends on the other load of a shared
machine, so the user/sys split and the ratios are what to compare. Targets take turns per
round (interleaved); the median per figure is printed.

The meshway targets run `python -m meshway.proxy.worker --standalone` with the full default
path (route, X-Forwarded-*, Via, latency headers, access log on): `meshway` (1 route),
`meshway10k` (10,000 routes, each its own host + path, load on the 5,000th), `plugins`
(key-auth + rate-limiting local + prometheus); `--pure` adds the 1-route and plugins nodes with
`http1_impl = python` (the pure-Python HTTP/1.1 path) next to them.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from meshbench.meshway import BENCH_KEY, declarative, many_routes, plugin_services, service  # noqa: E402
from meshbench.procs import CLK_TCK, CORE_LOAD, CORE_PROXY, Proc, clean_env, free_port, wait_port  # noqa: E402
from meshbench.servers import start_haproxy_http, start_nginx_proxy, start_origin  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")


def _ticks(pids: list[int]) -> tuple[int, int]:
    user = sys_ = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        sys_ += int(fields[12])
    return user, sys_


CONNS = [50]


def _wrk(url: str, seconds: float, headers: list[str]) -> tuple[int, float, float]:
    cmd = ["taskset", "-c", CORE_LOAD, "wrk", "-t1", f"-c{CONNS[0]}", f"-d{seconds:g}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx and int(non2xx.group(1)) > reqs // 100:
        raise RuntimeError(f"{url}: {non2xx.group(1)} non-2xx answers")
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return reqs, rps, float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")


def _rss_mib(pids: list[int]) -> float:
    """RSS of the proxy's last process (nginx: its worker; meshway: the worker itself)."""
    for pid in reversed(pids):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            continue
    return 0.0


class Target:
    def __init__(self, name: str, proc: Proc | None, port: int, headers: list[str] | None = None, path: str = "/"):
        self.name, self.proc, self.port, self.headers, self.path = name, proc, port, headers or [], path
        self.runs: list[dict] = []

    def measure(self, seconds: float) -> None:
        url = f"http://127.0.0.1:{self.port}{self.path}"
        _wrk(url, 1, self.headers)  # warm-up: pools filled, caches hot
        pids = self.proc.pids() if self.proc else []
        u0, s0 = _ticks(pids)
        reqs, rps, p99 = _wrk(url, seconds, self.headers)
        u1, s1 = _ticks(pids)
        per = 1e6 / CLK_TCK / reqs
        self.runs.append({"rps": rps, "user_us": (u1 - u0) * per, "sys_us": (s1 - s0) * per,
                          "cpu_us": (u1 - u0 + s1 - s0) * per, "p99_ms": p99, "rss_mib": _rss_mib(pids)})

    def median(self) -> dict:
        return {k: round(statistics.median(r[k] for r in self.runs), 2) for k in self.runs[0]}


def _meshway(workdir: Path, name: str, doc: dict, src: Path = ROOT / "src", conf_extra: str = "") -> tuple[Proc, int]:
    from meshway.model import parse_declarative

    d = workdir / name
    d.mkdir(parents=True)
    snap = d / "snapshot.json"
    snap.write_text(json.dumps(parse_declarative(doc)))
    conf = d / "meshway.conf"
    conf.write_text(f"prefix = {d}\n{conf_extra}")
    port = free_port()
    proc = Proc(name, [PY, "-m", "meshway.proxy.worker", "--standalone", "--conf", str(conf), "--listen",
                       f"127.0.0.1:{port}", "--snapshot", str(snap)], d / "worker.log", CORE_PROXY,
                env=clean_env({"PYTHONPATH": str(src)}))
    if not wait_port(port, 60):
        raise RuntimeError(f"{name} did not start: {proc.tail()}")
    return proc, port


def build(workdir: Path, origin: int, only: set[str], before: Path | None = None, pure: bool = False) -> list[Target]:
    targets = [Target("direct", None, origin)]
    want = lambda n: not only or n in only  # noqa: E731
    if want("nginx"):
        p, port, _ = start_nginx_proxy(workdir, origin, origin)
        targets.append(Target("nginx", p, port))
    if want("haproxy"):
        p, port = start_haproxy_http(workdir, origin)
        targets.append(Target("haproxy", p, port))
    if want("minimal"):
        port = free_port()
        p = Proc("minimal", [PY, str(HERE / "minimal_proxy.py"), str(port), str(origin)], workdir / "minimal.log",
                 CORE_PROXY)
        wait_port(port, 20)
        targets.append(Target("minimal", p, port))
    if want("meshway"):
        p, port = _meshway(workdir, "meshway", declarative([service("origin", origin, [{"name": "root", "paths": ["/"]}])]))
        targets.append(Target("meshway", p, port))
    if before is not None:  # the same 1-route node from another source tree (before/after runs)
        doc = declarative([service("origin", origin, [{"name": "root", "paths": ["/"]}])])
        p, port = _meshway(workdir, "before", doc, before)
        targets.append(Target("before", p, port))
        svcs, consumers = plugin_services(origin)
        p, port = _meshway(workdir, "before-plugins", declarative(svcs, consumers, [{"name": "prometheus"}]), before)
        targets.append(Target("before-plugins", p, port, [f"apikey: {BENCH_KEY}"]))
    if pure:  # the same nodes on the pure-Python HTTP/1.1 path (README "Performance", plan item 1)
        doc = declarative([service("origin", origin, [{"name": "root", "paths": ["/"]}])])
        p, port = _meshway(workdir, "meshway-pure", doc, conf_extra="http1_impl = python\n")
        targets.append(Target("meshway-pure", p, port))
        svcs, consumers = plugin_services(origin)
        p, port = _meshway(workdir, "plugins-pure", declarative(svcs, consumers, [{"name": "prometheus"}]),
                           conf_extra="http1_impl = python\n")
        targets.append(Target("plugins-pure", p, port, [f"apikey: {BENCH_KEY}"]))
    if want("meshway10k"):
        p, port = _meshway(workdir, "meshway10k", declarative([many_routes(origin, 10_000)]))
        targets.append(Target("meshway10k", p, port, ["Host: r5000.bench.test"], "/r5000"))
    if want("plugins"):
        svcs, consumers = plugin_services(origin)
        p, port = _meshway(workdir, "plugins", declarative(svcs, consumers, [{"name": "prometheus"}]))
        targets.append(Target("plugins", p, port, [f"apikey: {BENCH_KEY}"]))
    return targets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="")
    ap.add_argument("--conns", type=int, default=50, help="wrk -c (1: the unloaded latency run)")
    ap.add_argument("--before", type=Path, help="a `src` dir of another meshway tree (e.g. `git archive REV src`):"
                                                " adds targets `before` and `before-plugins`")
    ap.add_argument("--pure", action="store_true", help="adds `meshway-pure` and `plugins-pure`: http1_impl = python")
    args = ap.parse_args()
    only = {n for n in args.only.split(",") if n}
    CONNS[0] = args.conns
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="meshway-hotpath-") as tmp:
        workdir = Path(tmp)
        origin_proc, origin = start_origin(workdir)
        procs.append(origin_proc)
        try:
            targets = build(workdir, origin, only, args.before, args.pure)
            procs += [t.proc for t in targets if t.proc]
            for _ in range(args.rounds):
                for t in targets:
                    t.measure(args.seconds)
            report(targets)
        finally:
            for p in procs:
                p.stop()


def report(targets: list[Target]) -> None:
    figs = {t.name: t.median() for t in targets}
    print(f"{'target':<16}{'req/s':>10}{'CPU us':>9}{'user':>8}{'sys':>8}{'p99 ms':>9}{'RSS MiB':>9}")
    for name, f in figs.items():
        print(f"{name:<16}{f['rps']:>10.0f}{f['cpu_us']:>9.2f}{f['user_us']:>8.2f}{f['sys_us']:>8.2f}{f['p99_ms']:>9.2f}"
              f"{f['rss_mib']:>9.1f}")
    ng = figs.get("nginx")
    if ng:
        for name, f in figs.items():
            if name not in ("nginx", "direct") and f["cpu_us"]:
                print(f"  {name}/nginx per core (CPU us ratio): {ng['cpu_us'] / f['cpu_us']:.3f}")
    print(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "figures": figs}))


if __name__ == "__main__":
    main()
