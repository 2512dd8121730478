"""The cost of a burst of new connections (the `burst` scenario's work), counted instead of timed:
a meshway worker (or nginx, for comparison) takes `--conns` connections opened at once by a
client process, each sending one GET / and closing after its answer; the proxy relays them to
the nginx origin over real loopback sockets.

    .venv/bin/python bench/burst_micro.py --tool callgrind [--target meshway|pure|nginx] [--conns 1000] [--warm]
    .venv/bin/python bench/burst_micro.py --tool strace|cprofile|cpu [--target ...] [--requests 20]

`callgrind` zeroes the proxy worker's counters (callgrind_control -z) before the burst and dumps
them after it (-d): instructions per connection = Ir of that dump / conns (accept, the first
request, the upstream connect when the pool has no idle connection, the close), with the
functions they go to (`--top N`). `strace` attaches `strace -c -f` for the burst only: syscalls
per connection, by name. `--warm` runs one burst first, uncounted (the pool then holds idle
upstream connections, as in the scenario's second burst). With `--tool none` the client's
first-answer figures are wall clock (a rough indicator on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import large_micro  # noqa: E402
from large_micro import _wait_routed, start_target, worker_pid  # noqa: E402
from meshbench.burst import burst  # noqa: E402
from meshbench.servers import start_origin  # noqa: E402


# `--tool cprofile`: the worker runs under this wrapper, profiling between SIGUSR1 and SIGUSR2
_PROFILED = """
import cProfile, runpy, signal, sys
out, prof = sys.argv[1], cProfile.Profile()
signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
signal.signal(signal.SIGUSR2, lambda *_: (prof.disable(), prof.dump_stats(out)))
sys.argv = [sys.argv[4], *sys.argv[5:]]  # [out, python, -m, module, args...]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


# `--tool order`: the worker records (client port, request number) of each answer, in order,
# between SIGUSR1 and SIGUSR2; `--batch` sets the listener's accept batch (_accept.BATCH)
_ORDERED = """
import json, runpy, signal, sys
from meshway.proxy import _accept, _http1
out, seq, done = sys.argv[1], [], _http1.H1Server.exchange_done
if sys.argv[2] != "0":
    _accept.BATCH = int(sys.argv[2])
def exchange_done(self, ex, keep_alive, now=None):
    seq.append((self.client_port, self.requests))
    return done(self, ex, keep_alive, now)
_http1.H1Server.exchange_done = exchange_done
signal.signal(signal.SIGUSR1, lambda *_: seq.clear())
signal.signal(signal.SIGUSR2, lambda *_: open(out, "w").write(json.dumps(seq)))
sys.argv = [sys.argv[5], *sys.argv[6:]]  # [out, batch, python, -m, module, args...]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""
# nginx's side of `--tool order`: its access log, one line per answer, in order
_NGINX_ORDER = "log_format order '$remote_port $connection_requests';\n"
_BATCH = "0"


def _tool_prefix(tool: str, out: Path) -> list[str]:
    for name, text, result in (("cprofile", _PROFILED, "burst.prof"), ("order", _ORDERED, "order.json")):
        if tool == name:
            wrapper = out.parent / f"{name}.py"
            wrapper.write_text(text)
            return [large_micro.PY, str(wrapper), str(out.parent / result), *([_BATCH] if name == "order" else [])]
    return _large_prefix(tool, out)


def _order_figures(seq: list, conns: int) -> str:
    """Where each connection's first answer falls among all the answers the proxy wrote."""
    first = sorted(i + 1 for i, (_, n) in enumerate(seq) if int(n) == 1)
    if not first:
        return "no answers recorded"
    pct = lambda p: first[min(len(first) - 1, int(len(first) * p))]  # noqa: E731
    return (f"first answers: {len(first)} of {conns} connections; their position among the {len(seq)} answers "
            f"written: p50 {pct(0.5)}, p99 {pct(0.99)}, max {first[-1]}")


_large_prefix, large_micro._tool_prefix = large_micro._tool_prefix, _tool_prefix


def _python_profile(prof: Path, n: int, conns: int) -> str:
    """The `n` Python functions with the most time of their own, and their calls per connection."""
    stats = pstats.Stats(str(prof))
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]  # (cc, nc, tt, ct, callers)
    total = sum(v[2] for v in stats.stats.values())
    calls = sum(v[1] for v in stats.stats.values())
    lines = [f"Python: {calls / conns:.0f} calls per connection; self time, calls per connection, function"]
    for (path, line, func), (_, ncalls, tt, _, _) in rows:
        where = path.split("/src/")[-1].split("site-packages/")[-1] if "/" in path else path
        lines.append(f"  {100 * tt / total:5.1f}%  {ncalls / conns:5.2f}  {where}:{line}({func})")
    return "\n".join(lines)


def _callgrind_dump(workdir: Path, pid: int) -> Path:
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True, timeout=300)
    time.sleep(1.0)
    dumps = sorted(workdir.glob(f"callgrind.out.{pid}.*"), key=os.path.getmtime)
    assert dumps, list(workdir.iterdir())
    return dumps[-1]


def _top(dump: Path, n: int, conns: int) -> str:
    """The `n` functions with the most instructions of their own, per connection."""
    text = subprocess.run(["callgrind_annotate", "--threshold=100", str(dump)], capture_output=True, text=True,
                          check=True).stdout
    rows = []
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S.*)$", line)
        if m and "PROGRAM TOTALS" not in line and float(m.group(2)) < 99.5:  # (frames on the stack at the dump)
            where = re.sub(r"/tmp/python-build[^ ]*?/Python-3[.0-9]+/", "cpython/", m.group(3))
            where = re.sub(r" \[[^]]*\]$", "", where)
            rows.append(f"  {int(m.group(1).replace(',', '')) / conns:9.0f}  {m.group(2):>5}%  {where}")
    return "\n".join(rows[:n])


def _strace_lines(text: str, conns: int) -> list[str]:
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 5 and f[-1].isidentifier() and f[3].isdigit():
            out.append(f"  {f[-1]:<16} {int(f[3]) / conns:8.2f}")
        elif line.strip().endswith("total"):
            out.append(f"  {'total':<16} {int(f[2]) / conns:8.2f}")
    return out


def run(args: argparse.Namespace) -> None:
    global _BATCH
    _BATCH = str(args.batch)
    workdir = Path(tempfile.mkdtemp(prefix="meshway-burst-"))
    if args.tool == "order" and args.target == "nginx":
        import meshbench.servers as servers
        servers._PROXY_HTTP = _NGINX_ORDER + servers._PROXY_HTTP.replace(
            "client_max_body_size 0;", f"client_max_body_size 0; access_log {workdir}/order.log order;")
    origin_p, origin = start_origin(workdir)
    conf = "proxy_access_log = off\n" + args.conf.replace(";", "\n")  # as the `burst` scenario
    tool = args.tool if args.target != "nginx" or args.tool in ("callgrind", "strace") else "none"
    try:
        proc, port = start_target(workdir, args.target, origin, tool, conf, Path(args.src))
    except BaseException:  # (a port taken meanwhile, a build missing): the origin goes too
        origin_p.stop()
        raise
    try:
        _wait_routed(port, "/")
        if args.warm:
            burst(port, args.conns, args.requests)
            # the worker's memory release after a burst (_memory.MemoryKeeper: a full collection
            # once the connections fell to a quarter of their peak, looked at once a second)
            # happens now, not in the counted burst
            time.sleep(2.5)
        pid = worker_pid(proc, args.target)
        st = None
        if args.tool == "callgrind":
            subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True, timeout=300)
        elif args.tool == "strace":
            st_out = workdir / "strace.txt"
            st = subprocess.Popen(["strace", "-c", "-f", "-o", str(st_out), "-p", str(pid)], stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached (strace prints nothing when it is)
        elif args.tool == "cprofile":
            os.kill(pid, signal.SIGUSR1)
            time.sleep(0.5)
        elif args.tool == "cpu":
            ticks0 = large_micro._ticks(pid)
        elif args.tool == "order" and args.target != "nginx":
            os.kill(pid, signal.SIGUSR1)
            time.sleep(0.5)
        elif args.tool == "order":
            (workdir / "order.log").write_text("")  # (nginx appends: what it writes next starts it)
        figs = burst(port, args.conns, args.requests)
        state = "warm" if args.warm else "fresh"
        if args.tool == "callgrind":
            dump = _callgrind_dump(workdir, pid)
            text = dump.read_text(errors="replace")
            ir = int(re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M).group(1))
            if args.top:  # (the headline last: profile_counts.py shows a harness's last line)
                print(f"instructions per connection, self, by function (top {args.top}):")
                print(_top(dump, args.top, args.conns))
            print(f"{args.target} ({state}): {ir / args.conns / 1000:.1f}k instructions per connection "
                  f"({args.conns} connections, {args.requests} request(s) each)")
        elif args.tool == "strace":
            st.send_signal(signal.SIGINT)
            st.wait(30)
            print(f"{args.target} ({state}): syscalls per connection "
                  f"({args.conns} connections, {args.requests} request(s) each)")
            print("\n".join(_strace_lines(st_out.read_text(), args.conns)))
        elif args.tool == "cprofile":
            os.kill(pid, signal.SIGUSR2)
            prof = workdir / "burst.prof"
            for _ in range(100):
                if prof.exists():
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            print(f"{args.target} ({state}): cProfile ({args.conns} connections, {args.requests} request(s) each)")
            print(_python_profile(prof, args.top or 30, args.conns))
        elif args.tool == "order":
            if args.target == "nginx":
                time.sleep(0.5)
                seq = [line.split() for line in (workdir / "order.log").read_text().splitlines()]
            else:
                os.kill(pid, signal.SIGUSR2)
                time.sleep(1.0)
                seq = json.loads((workdir / "order.json").read_text())
            print(f"{args.target} ({state}): {_order_figures(seq, args.conns)}; client {figs}")
        elif args.tool == "cpu":
            user, system = (b - a for a, b in zip(ticks0, large_micro._ticks(pid)))
            per = 1e6 / os.sysconf("SC_CLK_TCK") / args.conns
            print(f"{args.target} ({state}): CPU per connection user {user * per:.0f} us, system {system * per:.0f} us;"
                  f" client {figs}")
        else:
            print(f"{args.target} ({state}): {figs}")
    finally:
        proc.stop()
        origin_p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default="meshway", choices=["meshway", "pure", "nginx"])
    ap.add_argument("--tool", default="none", choices=["none", "callgrind", "strace", "cprofile", "cpu", "order"])
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=1, help="requests per connection, one after another "
                    "(the `burst` scenario sends 20; counts per connection then include them)")
    ap.add_argument("--warm", action="store_true", help="one uncounted burst first")
    ap.add_argument("--top", type=int, default=0, help="print the N functions with the most instructions")
    ap.add_argument("--batch", type=int, default=0, help="with --tool order: the accept batch (0: as configured)")
    ap.add_argument("--src", default=str(large_micro.ROOT / "src"),
                    help="the meshway sources to run (another checkout's, built)")
    ap.add_argument("--conf", default="", help="extra meshway.conf lines, ';'-separated")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
