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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meshbench import alone  # noqa: E402
from meshbench.scenarios_zones import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(alone.main(sys.argv[1:], "zones", "web to api through two mesh gateways vs one zone and direct (netns)", run))
