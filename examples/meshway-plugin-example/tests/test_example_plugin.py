"""The example plugin, discovered through its entry point by a real worker, on a real request.

Nothing is installed into the shared venv: the test writes a `*.dist-info` with the package's
`entry_points.txt` into a temp dir and puts it (and the package source) on the worker's
PYTHONPATH, which is exactly what `importlib.metadata` reads for an installed package.
"""
from __future__ import annotations

import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent
REPO = PACKAGE.parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.proxy.proxy_for_test import (  # noqa: E402
    Origin, WorkerProcess, plugin_for_test, route_for_test, service_for_test, snapshot_for_test,
)


def fake_install_for_test(tmp: Path) -> Path:
    """A site dir holding the package's dist-info (METADATA + entry_points.txt)."""
    site = tmp / "site"
    info = site / "meshway_plugin_example-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: meshway-plugin-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[meshway.plugins]\nexample-add-header = meshway_plugin_example:AddHeaderPlugin\n")
    return site


def test_example_plugin_runs_on_a_request(tmp_path):
    origin = Origin()
    site = fake_install_for_test(tmp_path)
    svc = service_for_test(port=origin.port)
    route = route_for_test(svc, paths=["/"])
    plugin = plugin_for_test("example-add-header", {"header_name": "X-Example", "header_value": "hi"}, route=route)
    worker = WorkerProcess(snapshot_for_test(services=[svc], routes=[route], plugins=[plugin]), tmp_path / "w",
                           extra_path=[str(site), str(PACKAGE / "src")])
    try:
        r = httpx.get(worker.url + "/x")
        assert r.status_code == 200
        assert r.headers["x-example"] == "hi"
        assert ["X-Example", "hi"] in r.json()["headers"]
    finally:
        worker.stop()
        origin.close()
