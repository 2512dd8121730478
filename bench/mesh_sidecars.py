"""App to app through two sidecars against direct: the `mesh` scenario of bench/run.sh, alone.

    .venv/bin/python bench/mesh_sidecars.py [--quick] [--seconds S] [--conns N] [--rounds R]
                                            [--json FILE] [--keep]

Needs root (it creates network namespaces `mwbench-<hex>-*` and deletes them, with everything
that ran in them, at the end). Prints the table (req/s, p50/p99, the two data planes' CPU per
request, added p50/p99 over direct) and, with --json, writes the figures there. Unlike run.sh it
never writes bench/results/. See bench/meshbench/scenarios_mesh.py for the set-up.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meshbench import alone  # noqa: E402
from meshbench.scenarios_mesh import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(alone.main(sys.argv[1:], "mesh", "app to app through two meshway sidecars vs direct (netns)", run))
