"""Instruction counts per request of each hot-path harness, with the functions they go to.

    .venv/bin/python bench/profile_counts.py [--counted 2000] [--only http1,plugins,...]

Runs each harness under valgrind's callgrind, counting only the requests (`--counted N` inside
`itertools.starmap`, `PYTHONHASHSEED=0`), and writes `bench/results/profile-counts-<UTC>.txt`:
instructions per request, the 20 C functions with the most instructions of their own
(`callgrind_annotate`: the bytecode interpreter, llhttp, allocation...) and the 20 Python functions
with the most time of their own and their calls per request (cProfile over the same harness,
which inflates call overhead: read it for where and how often, not for shares), so that a target the benchmark misses has the profile that shows where
its CPU goes. Counts do not depend on the machine's load, unlike the benchmark's wall clock.
The `burst*` sections are per new connection (bench/burst_micro.py: callgrind and strace over a
worker taking 1,000 connections at once, and nginx over the same burst).
"""
from __future__ import annotations

import argparse
import datetime
import os
import pstats
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = ROOT / ".venv" / "bin" / "python"

# name -> (harness and its arguments, what it measures)
HARNESSES = {
    "http1": (["hotpath_micro.py"], "HTTP/1.1 keep-alive GET, route without plugins, full default path"),
    "http1-pure": (["hotpath_micro.py", "--conf", "http1_impl=python"], "the same on the pure-Python path"),
    "plugins": (["hotpath_micro.py", "--snapshot", "plugins"], "key-auth + rate-limiting (local) + prometheus"),
    "plugins-shm": (["hotpath_micro.py", "--snapshot", "plugins", "--shm"],
                    "the same with the node-wide shared counter table, as the benchmark's node has it"),
    "routes10k": (["hotpath_micro.py", "--snapshot", "10k"], "10,000 routes, host + path"),
    "upstream": (["hotpath_micro.py", "--snapshot", "upstream"], "the http1 request to an upstream entity of one target (round-robin)"),
    "http2": (["hotpath_h2.py"], "HTTP/2 GET per stream on one connection, HTTP/1.1 upstream"),
}
# Harnesses that count with callgrind themselves (another process, zeroed and dumped around the
# measured part): their own output is the figure
OWN = {
    "https": (["hotpath_tls.py", "--full"], "a worker's whole HTTPS path, by TLS transport"),
    "large": (["large_micro.py", "--tool", "callgrind", "--target", "meshway"], "1 MiB responses, per MiB"),
    "large-nginx": (["large_micro.py", "--tool", "callgrind", "--target", "nginx"], "nginx on the same responses"),
    "large-syscalls": (["large_micro.py", "--tool", "strace", "--target", "meshway"], "syscalls per MiB"),
    "burst": (["burst_micro.py", "--tool", "callgrind", "--top", "30"],
              "1,000 new connections at once to a fresh worker, one request each, per connection"),
    "burst-warm": (["burst_micro.py", "--tool", "callgrind", "--warm", "--top", "30"],
                   "the same on a warm worker (idle upstream connections pooled)"),
    "burst-pure": (["burst_micro.py", "--tool", "callgrind", "--target", "pure"], "the fresh burst, pure path"),
    "burst-nginx": (["burst_micro.py", "--tool", "callgrind", "--target", "nginx", "--top", "20"],
                    "nginx on the same burst"),
    "burst-syscalls": (["burst_micro.py", "--tool", "strace"], "syscalls per connection, fresh"),
    "burst-syscalls-warm": (["burst_micro.py", "--tool", "strace", "--warm"], "syscalls per connection, warm"),
    "burst-syscalls-nginx": (["burst_micro.py", "--tool", "strace", "--target", "nginx"], "nginx's syscalls"),
}


def count(name: str, argv: list[str], counted: int, workdir: Path) -> tuple[float, str]:
    out = workdir / f"{name}.cg"
    cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=starmap_next",
           f"--callgrind-out-file={out}", str(PY), str(HERE / argv[0]), *argv[1:], "--counted", str(counted)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=1800)
    total = next(int(line.split()[1]) for line in out.read_text().splitlines() if line.startswith("summary:"))
    top = subprocess.run(["callgrind_annotate", "--threshold=100", str(out)], capture_output=True, text=True,
                         check=True).stdout
    return total / counted, _top_functions(top, 20)


def _top_functions(annotated: str, n: int) -> str:
    lines = annotated.splitlines()
    start = next((i for i, line in enumerate(lines) if "file:function" in line), 0)
    shown = [re.sub(r"/tmp/python-build[^ ]*?/Python-3[.0-9]+/", "cpython/", line)
             for line in lines[start:start + n + 2] if line.strip()]
    return "\n".join(re.sub(r" \[[^]]*\]$", "", line) for line in shown)


def python_profile(argv: list[str], requests: int, workdir: Path) -> str:
    out = workdir / "py.prof"
    subprocess.run([str(PY), str(HERE / argv[0]), *argv[1:], "--requests", str(requests), "--profile", str(out)],
                   check=True, capture_output=True, timeout=1800)
    stats = pstats.Stats(str(out))
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:20]  # (cc, nc, tt, ct, callers)
    total = sum(v[2] for v in stats.stats.values())
    calls = sum(v[1] for v in stats.stats.values())
    lines = [f"Python: {calls / requests:.0f} calls per request; self time, calls per request, function"]
    for (path, line, func), (_, ncalls, tt, _, _) in rows:
        where = path.split("/src/")[-1].split("/bench/")[-1] if "/" in path else path
        lines.append(f"  {100 * tt / total:5.1f}%  {ncalls / requests:5.2f}  {where}:{line}({func})")
    return "\n".join(lines)


def own_figures(argv: list[str]) -> str:
    done = subprocess.run([str(PY), str(HERE / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    text = done.stdout.strip()
    return text if done.returncode == 0 else f"{text}\nfailed (rc={done.returncode}): {done.stderr.strip()[-500:]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counted", type=int, default=2000)
    ap.add_argument("--profiled", type=int, default=20000, help="requests of the cProfile run")
    ap.add_argument("--only", default=",".join([*HARNESSES, *OWN]))
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report = [f"# Instructions per request (callgrind, PYTHONHASHSEED=0, {args.counted} requests counted), "
              f"commit {commit}, {stamp}, Python {sys.version.split()[0]}", ""]
    with tempfile.TemporaryDirectory(prefix="meshway-cg-") as tmp:
        for name in names:
            if name in OWN:
                argv, what = OWN[name]
                text = own_figures(argv)
                print(f"{name:<12}{text.splitlines()[-1] if text else ''}", flush=True)
                report += [f"## {name} ({what})", f"harness: bench/{' '.join(argv)}", "", text, ""]
                continue
            argv, what = HARNESSES[name]
            per_request, top = count(name, argv, args.counted, Path(tmp))
            print(f"{name:<12}{per_request / 1000:>9.1f}k  {what}", flush=True)
            report += [f"## {name}: {per_request / 1000:.1f}k instructions per request ({what})",
                       f"harness: bench/{' '.join(argv)} --counted {args.counted}", "", top, "",
                       python_profile(argv, args.profiled, Path(tmp)), ""]
    path = HERE / "results" / f"profile-counts-{stamp}.txt"
    path.write_text("\n".join(report) + "\n")
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
