"""Profile a meshway worker under wrk load with py-spy; writes an SVG flame graph (or speedscope
JSON) into bench/results/. Run through bench/profile.sh."""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meshbench import meshway as mw  # noqa: E402
from meshbench.lab import Lab, RunConfig, Scope  # noqa: E402
from meshbench.load import Target  # noqa: E402
from meshbench.procs import CORE_LOAD, pinned  # noqa: E402
from meshbench.report import RESULTS  # noqa: E402
from meshbench.scenarios_http import meshway_target, plain_doc  # noqa: E402

PY_SPY = Path(sys.executable).parent / "py-spy"


def node_for(kind: str, lab: Lab, scope: Scope) -> Target:
    if kind == "routes10k":
        doc = mw.declarative([mw.many_routes(lab.origin_port, 10_000)])
        return meshway_target(scope, "prof", doc, path="/r5000", host="r5000.bench.test")
    if kind == "plugins":
        services, consumers = mw.plugin_services(lab.origin_port)
        doc = mw.declarative(services, consumers, plugins=[{"name": "prometheus"}])
        return meshway_target(scope, "prof", doc, headers=(f"apikey: {mw.BENCH_KEY}",))
    return meshway_target(scope, "prof", plain_doc(lab), tls=(kind == "https"))


def record(target: Target, lab: Lab, seconds: int, fmt: str, native: bool) -> Path:
    """wrk -c50 for seconds+2 on the load core; py-spy samples the worker on the load core too."""
    worker = target.node.worker_pids()[0]  # type: ignore[attr-defined]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"profile-{stamp}.{ {'flamegraph': 'svg', 'speedscope': 'json'}.get(fmt, 'txt') }"
    RESULTS.mkdir(parents=True, exist_ok=True)
    wrk = ["wrk", "-t1", f"-c{lab.cfg.conns}", f"-d{seconds + 2}s", *sum((["-H", h] for h in target.headers), []),
           target.url]
    load = subprocess.Popen(pinned(CORE_LOAD, wrk), stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    spy = [str(PY_SPY), "record", "--pid", str(worker), "--duration", str(seconds), "--rate", "200",
           "--format", fmt, "--output", str(out), "--nonblocking", *(["--native"] if native else [])]
    subprocess.run(pinned(CORE_LOAD, spy), check=False, timeout=seconds + 60)
    print(load.communicate(timeout=seconds + 30)[0])
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scenario", choices=("http1", "routes10k", "plugins", "https"), default="http1")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--format", choices=("flamegraph", "speedscope", "raw"), default="flamegraph")
    p.add_argument("--native", action="store_true", help="include C frames (uvloop, httptools)")
    args = p.parse_args(argv)
    os.sched_setaffinity(0, {int(CORE_LOAD)})  # keep the harness off the proxy's core
    if not PY_SPY.exists() and not shutil.which("py-spy"):
        raise SystemExit(f"py-spy missing: {Path(sys.executable).parent}/pip install py-spy")
    with Lab(RunConfig.make(quick=False)) as lab, Scope(lab) as scope:
        target = node_for(args.scenario, lab, scope)
        if target.error:
            raise SystemExit(f"meshway did not start: {target.error}")
        out = record(target, lab, args.seconds, args.format, args.native)
    print(f"profile: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
