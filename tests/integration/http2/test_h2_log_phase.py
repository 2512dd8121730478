"""The log phase over HTTP/2: a plain (synchronous) `log` method runs when the stream ends."""
from __future__ import annotations

import json
import subprocess

from tests.integration.proxy.proxy_for_test import (
    Origin, WorkerProcess, plugin_for_test, route_for_test, service_for_test, snapshot_for_test,
)


def test_file_log_writes_the_h2_request(tmp_path):
    origin = Origin()
    log_path = tmp_path / "file.log"
    svc = service_for_test(port=origin.port)
    route = route_for_test(svc, paths=["/logged"])
    snap = snapshot_for_test(services=[svc], routes=[route],
                             plugins=[plugin_for_test("file-log", {"path": str(log_path)}, route=route)])
    w = WorkerProcess(snap, tmp_path / "worker", listen=["127.0.0.1:0 http2"])
    try:
        out = subprocess.run(["curl", "-s", "--max-time", "10", "--http2-prior-knowledge", "-o", "/dev/null",
                              "-w", "%{http_code} %{http_version}", f"http://127.0.0.1:{w.port}/logged/a"],
                             capture_output=True, timeout=20, text=True).stdout
        w.stop()  # the worker finishes its streams and log phases before it exits
    finally:
        w.stop()
        origin.close()
    assert out == "200 2"
    entry = json.loads(log_path.read_text().splitlines()[-1])
    assert entry["request"]["uri"] == "/logged/a" and entry["response"]["status"] == 200
