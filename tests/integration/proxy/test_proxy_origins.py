"""The node setting `origins` (Kong 1.x) in the HTTP proxy: where this node dials a service's peer."""
from __future__ import annotations

import json
import socket
import subprocess

import httpx
import pytest

from tests.integration.proxy.proxy_for_test import (
    Origin, WorkerProcess, route_for_test, service_for_test, snapshot_for_test, target_for_test, upstream_for_test,
)


def _closed_port() -> int:
    """A local port nothing listens on: a dial to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def worker(origin, tmp_path_factory):
    direct, balanced = _closed_port(), _closed_port()
    fixed = service_for_test(port=direct, retries=0)
    up = upstream_for_test("backend.test")
    pooled = service_for_test(host="backend.test", port=80, retries=0)
    routes = [route_for_test(fixed, paths=["/fixed"]), route_for_test(pooled, paths=["/balanced"])]
    snap = snapshot_for_test(services=[fixed, pooled], routes=routes, upstreams=[up],
                             targets=[target_for_test(up, f"127.0.0.1:{balanced}")])
    origins = f"http://127.0.0.1:{direct}=http://127.0.0.1:{origin.port}, " \
              f"http://127.0.0.1:{balanced}=http://127.0.0.1:{origin.port}"
    w = WorkerProcess(snap, tmp_path_factory.mktemp("origins"), listen=["127.0.0.1:0", "127.0.0.1:0 http2"],
                      env={"MESHWAY_ORIGINS": origins})
    yield w, direct
    w.stop()


@pytest.mark.parametrize("path", ["/fixed", "/balanced"])
def test_origins_send_the_chosen_peer_traffic_elsewhere(worker, path):
    w, _ = worker
    r = httpx.get(f"{w.url}{path}/x")
    assert r.status_code == 200 and r.headers["x-origin"] == "yes"
    assert r.json()["url"] == "/x"


@pytest.mark.parametrize("path", ["/fixed", "/balanced"])
def test_origins_apply_to_http2_clients_too(worker, path):
    w, _ = worker
    url = f"http://127.0.0.1:{w.addrs[1][1]}{path}/y"
    out = subprocess.run(["curl", "-s", "--max-time", "10", "--http2-prior-knowledge",
                          "-w", "\n%{http_code} %{http_version}", url], capture_output=True, timeout=20).stdout
    body, _, tail = out.rpartition(b"\n")
    assert tail == b"200 2" and json.loads(body)["url"] == "/y"


def test_the_host_header_stays_the_services(worker):
    w, direct = worker
    headers = dict((k.lower(), v) for k, v in httpx.get(f"{w.url}/fixed").json()["headers"])
    assert headers["host"] == f"127.0.0.1:{direct}"


def test_without_origins_the_peer_itself_is_dialled(worker, tmp_path):
    w, direct = worker
    snap = json.loads((w.prefix / "snapshot.json").read_text())
    plain = WorkerProcess(snap, tmp_path / "plain")
    try:
        assert httpx.get(f"{plain.url}/fixed").status_code == 502  # refused: nothing listens there
    finally:
        plain.stop()
