"""web to api through two mesh gateways against one zone and direct: run.sh's `zones` scenario, alone.

    .venv/bin/python bench/zones_gateways.py [--quick] [--seconds S] [--conns N] [--rounds R]
                                            [--json FILE] [--keep]

Needs root (it builds docs/guides/multi-zone.md's topology in network namespaces `mwtest-<hex>-*`
and deletes them, with everything that ran in them, at the end). Prints the table (req/s,
p50/p99, the path's meshway CPU per request, added p50/p99 over direct and, for two-gateways,
over one zone) and, with --json, writes the figures there. Unlike run.sh it never writes
bench/results/. See bench/meshbench/scenarios_zones.py for the set-up.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meshbench import report  # noqa: E402
from meshbench.lab import RunConfig  # noqa: E402
from meshbench.scenarios_zones import run  # noqa: E402


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="web to api through two mesh gateways vs one zone and direct (netns)")
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
    print(report.table({"scenarios": {"zones": out}, "targets": []}).split("\n\nTargets:")[0])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
