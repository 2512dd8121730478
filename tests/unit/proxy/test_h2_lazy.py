"""A worker loads the HTTP/2 stack (`h2`, `meshway.proxy.http2`) with its first HTTP/2
connection, not at start: a node's worker process imports without it (the HTTP/2 tests in
tests/integration/http2 go through the stand-in handler that imports it on first use)."""
from __future__ import annotations

import subprocess
import sys


def test_a_node_worker_starts_without_the_http2_stack():
    code = (
        "import sys, meshway.node.worker\n"
        "print(sorted(m for m in ('h2', 'hpack', 'hyperframe', 'meshway.proxy.http2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
