"""Entry point: `bench/run.sh [--quick] [--only NAME[,NAME]]` (see bench/README.md)."""
from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meshbench import machine, report  # noqa: E402
from meshbench.lab import Lab, RunConfig  # noqa: E402
from meshbench.procs import CORE_LOAD  # noqa: E402
from meshbench.scenarios import SCENARIOS  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="meshway vs nginx / HAProxy / direct, pinned, on loopback")
    p.add_argument("--quick", action="store_true", help="every scenario once, short runs (smoke, < 2 min)")
    p.add_argument("--only", default="", help=f"comma-separated scenarios: {','.join(SCENARIOS)}")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs) for debugging")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    args = p.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return args


def run_one(lab: Lab, name: str) -> dict:
    """A scenario that raises becomes `error: <reason>`; the run goes on."""
    t0 = time.monotonic()
    try:
        out = SCENARIOS[name](lab)
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        out = {"error": f"{type(e).__name__}: {e}"[:400]}
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # the harness itself (samplers, /proc scans) stays off the proxy's core
    os.sched_setaffinity(0, {int(CORE_LOAD)})
    # SIGTERM unwinds like Ctrl-C, so every process we started is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.no_install:
        machine.ensure_tools()
    cfg = RunConfig.make(args.quick)
    result = {"started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine.describe(), "config": vars(cfg), "scenarios": {}}
    with Lab(cfg, keep=args.keep) as lab:
        if args.keep:
            print(f"temp dir: {lab.workdir}", file=sys.stderr)
        for name in args.names:
            print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
            result["scenarios"][name] = run_one(lab, name)
    result["targets"] = report.judge(result["scenarios"])
    latest, copy = report.write_json(result)
    print(report.table(result))
    print(f"\nJSON: {latest} (copy: {copy.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
