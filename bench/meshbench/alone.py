"""One netns scenario of bench/run.sh run alone (bench/mesh_sidecars.py, bench/zones_gateways.py):
the same flags, the table printed, the figures written with --json, never bench/results/."""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from meshbench import report
from meshbench.lab import RunConfig


def main(argv: list[str], name: str, description: str, run: Callable[[RunConfig, Path, bool], dict]) -> int:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="1 s loads, 1 round, no warm-up")
    p.add_argument("--seconds", type=float, help="seconds per load run")
    p.add_argument("--conns", type=int, help="wrk connections of the loaded run (default 50)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3, 1 with --quick)")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs) and print it")
    args = p.parse_args(argv)
    cfg = RunConfig.make(args.quick)
    cfg = dataclasses.replace(cfg, duration=args.seconds or cfg.duration, conns=args.conns or cfg.conns,
                              rounds=args.rounds or cfg.rounds)
    workdir = Path(tempfile.mkdtemp(prefix="meshway-bench-"))
    try:
        out = run(cfg, workdir, args.keep)
    except Exception as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report.table({"scenarios": {name: out}, "targets": []}).split("\n\nTargets:")[0])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
