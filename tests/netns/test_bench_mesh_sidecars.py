"""bench/mesh_sidecars.py (run.sh's `mesh` scenario) runs end to end at a tiny size and cleans up.

It asserts that figures exist for both paths and that the sidecar path was the mesh; never timings
(the machine is shared, and a benchmark's numbers are not a test's business)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.netns.conftest import PYTHON, REPO

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("mwbench-")}


def test_the_two_sidecars_scenario_runs_and_leaves_nothing_behind(tmp_path):
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "wrk", "nginx", "setpriv")):
        pytest.skip("needs root, iproute2, wrk, nginx and setpriv")
    before = _namespaces()
    out = tmp_path / "mesh.json"
    done = subprocess.run([PYTHON, str(REPO / "bench" / "mesh_sidecars.py"), "--seconds", "1", "--rounds", "1",
                           "--conns", "2", "--json", str(out)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())["targets"]
    for name in ("direct", "two-sidecars", "direct-c1", "two-sidecars-c1"):
        assert "error" not in figures[name], figures[name]
        assert figures[name]["requests"] > 0 and figures[name]["non_2xx"] == 0
    for name in ("two-sidecars", "two-sidecars-c1"):  # the added latency is reported (its value is not judged)
        assert {"added_p50_ms", "added_p99_ms"} <= set(figures[name])
        assert figures[name]["cpu_us_per_req"] is not None  # the data planes' processes were found and measured
    assert "two-sidecars" in done.stdout and "added_p99_ms=" in done.stdout
    assert _namespaces() == before  # the namespaces (and what ran in them) are gone
