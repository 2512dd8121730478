"""bench/zones_gateways.py (run.sh's `zones` scenario) runs end to end at a tiny size and cleans up.

It asserts that figures exist for the three paths (direct, one zone, two gateways) and that the
added latencies are reported; never timings (the machine is shared, and a benchmark's numbers are
not a test's business). That each path is the intended one is checked by the scenario itself: it
loads a path only once web's outbound answers from api in that zone."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.netns.conftest import PYTHON, REPO

pytestmark = [pytest.mark.netns, pytest.mark.slow]
PATHS = ("direct", "one-zone", "two-gateways")


def _namespaces(prefix: str) -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith(prefix)}


def test_the_two_gateways_scenario_runs_and_leaves_nothing_behind(tmp_path):
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "wrk", "nginx", "taskset")):
        pytest.skip("needs root, iproute2, wrk, nginx and taskset")
    out = tmp_path / "zones.json"
    done = subprocess.run([PYTHON, str(REPO / "bench" / "zones_gateways.py"), "--seconds", "1", "--rounds", "1",
                           "--conns", "2", "--json", str(out)], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    figures = result["targets"]
    for name in [*PATHS, *(f"{p}-c1" for p in PATHS)]:
        assert "error" not in figures[name], figures[name]
        assert figures[name]["requests"] > 0 and figures[name]["non_2xx"] == 0
    for name in ("one-zone", "two-gateways", "one-zone-c1", "two-gateways-c1"):  # reported, not judged
        assert {"added_p50_ms", "added_p99_ms"} <= set(figures[name])
        assert figures[name]["cpu_us_per_req"] is not None  # the path's meshway processes were found
    for name in ("two-gateways", "two-gateways-c1"):
        assert {"gateways_added_p50_ms", "gateways_added_p99_ms"} <= set(figures[name])
    assert "two-gateways" in done.stdout and "gateways_added_p99_ms=" in done.stdout
    assert result["namespaces"].startswith("mwtest-")  # other runs' namespaces are not its business
    assert _namespaces(result["namespaces"]) == set()  # its namespaces (and what ran in them) are gone
