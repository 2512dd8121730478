"""Fixtures of the ingress controller's tests: kmock's EMULATED API server (no real kube-apiserver
can run here), a DB-less meshway node, the real `meshway ingress-controller` process, HTTP origins."""
from __future__ import annotations

import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.helpers.node import MESHWAY, clean_env, node_factory  # noqa: F401  (fixture)
from tests.k8s.apiserver import EmulatedApiServer


class _Origin(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = f"{self.server.name} {self.path} host={self.headers.get('Host')}".encode()
        self.send_response(200)
        for name, value in self.headers.items():  # what the proxy sent, for header filters
            if name.lower().startswith("x-"):
                self.send_header("Echo-" + name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def origins():
    servers = []
    for name in ("origin-a", "origin-b"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
        server.name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield [s.server_address[1] for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def apiserver():
    server = EmulatedApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def start_controller(apiserver, node_factory, tmp_path):  # noqa: F811
    """`start_controller(*extra_flags, **node_settings)` -> (node, DB-less unless `database` is given, controller
    log path); stopped at teardown."""
    started = []

    def start(*extra: str, **node_settings: str):
        node = node_factory(**{"database": "off", **node_settings})
        node.start()
        log = (tmp_path / "controller.log").open("w+")
        proc = subprocess.Popen(
            [MESHWAY, "ingress-controller", "--kubeconfig", str(apiserver.kubeconfig(tmp_path / "kubeconfig")),
             "--kong-admin-url", node.admin, "--proxy-sync-seconds", "0.2",
             "--health-probe-bind-address", "off", *extra],  # KIC's :10254 default is all interfaces
            stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        started.append((proc, log))
        return node, tmp_path / "controller.log"
    yield start
    for proc, log in started:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def controller(start_controller):
    return start_controller()


def eventually(get, check, what: str, seconds: float = 60):  # generous: the test machine is shared
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            last = get()
            if check(last):
                return last
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{what}: last seen {last!r}")


