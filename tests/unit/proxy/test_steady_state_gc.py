"""A worker proxying keep-alive requests leaves no cyclic garbage per request, so in steady state
it runs no garbage collection: nothing of the kind can stall a request (the unloaded p99 of
issue 17; bench/p99_probe.py counted 0 collections per 10,000 requests through a real node).
On both HTTP/1.1 paths, compiled and pure Python."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("gc_steady_probe_for_test.py")
REQUESTS = 5000


@pytest.mark.parametrize("impl", ["auto", "python"])
def test_a_worker_in_steady_state_runs_no_collection(impl):
    done = subprocess.run([sys.executable, str(PROBE), impl, str(REQUESTS)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout.splitlines()[-1])
    assert res["client_status"] == 0, res  # every request answered 200 through the proxy
    assert res["collections"] == [], res
    # what is left for the collector: objects in cycles, or kept. A cycle per request would be
    # >= REQUESTS; a new upstream connection every 1,000 requests leaves a few.
    assert res["gen0_growth"] < 100, res
