"""The worker as the master runs it: inherited sockets, boot frame, config/call/stop frames."""
from __future__ import annotations

import os
import socket
import subprocess
import time

import httpx
import pytest

from meshway import ipc
from meshway.proxy.netutil import prepare_listener_socket
from meshway.settings import ListenSpec
from tests.integration.proxy.proxy_for_test import (
    PYTHON, ROOT, Origin, pass_through_snapshot_for_test, plugin_for_test, route_for_test, service_for_test,
    snapshot_for_test,
)


class MasterForTest:
    """Plays the node master: binds a listener, spawns one worker, speaks frames."""

    def __init__(self, prefix):
        self.listener = prepare_listener_socket(ListenSpec(host="127.0.0.1", port=0))
        self.port = self.listener.getsockname()[1]
        self.ours, theirs = socket.socketpair()
        env = {**os.environ, "MESHWAY_PREFIX": str(prefix), "MESHWAY_PROXY_LISTEN": "127.0.0.1:1"}
        cmd = [PYTHON, "-m", "meshway.proxy.worker", "--control-fd", str(theirs.fileno()), "--worker-id", "3"]
        self.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno(), self.listener.fileno()], env=env, cwd=str(ROOT))
        theirs.close()
        self.reader = ipc.FrameReader()
        self.ours.settimeout(30)
        self.send({"op": "boot", "listeners": [{"fd": self.listener.fileno(), "kind": "proxy", "index": 0}]})

    def send(self, msg):
        self.ours.sendall(ipc.encode(msg))

    def recv(self):
        while True:
            for msg in self.reader.feed(b""):
                return msg
            data = self.ours.recv(1 << 20)
            if not data:
                raise EOFError
            for msg in self.reader.feed(data):
                return msg

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.ours.close()
        self.listener.close()


@pytest.fixture
def master(tmp_path):
    m = MasterForTest(tmp_path)
    yield m
    m.close()


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.close()


def test_boot_config_call_stop(master, origin):
    url = f"http://127.0.0.1:{master.port}"
    svc = service_for_test(port=origin.port)
    snap = snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"])])
    master.send({"op": "config", "hash": "h1", "snapshot": snap})
    reply = master.recv()
    assert reply["op"] == "applied" and reply["hash"] == "h1" and reply["ms"] >= 0
    assert httpx.get(url + "/x").status_code == 200

    bad = snapshot_for_test(services=[svc], routes=[], plugins=[plugin_for_test("no-such-plugin")])
    master.send({"op": "config", "hash": "h2", "snapshot": bad})
    reply = master.recv()
    assert reply["op"] == "rejected" and "no-such-plugin" in reply["error"]
    assert httpx.get(url + "/x").status_code == 200  # the last good config still serves

    master.send({"op": "call", "id": 7, "method": "metrics", "args": {}})
    reply = master.recv()
    assert reply["id"] == 7 and 'meshway_worker_requests_total{worker="3"} 2' in reply["result"]
    master.send({"op": "call", "id": 8, "method": "nope", "args": {}})
    assert "unknown method" in master.recv()["error"]

    master.send({"op": "stop"})
    assert master.proc.wait(10) == 0


def test_ten_thousand_routes_apply_and_route(master, origin):
    svc = service_for_test(port=origin.port)
    routes = [route_for_test(svc, hosts=[f"h{i}.example.com"], paths=[f"/p{i}"], strip_path=False) for i in range(10_000)]
    master.send({"op": "config", "hash": "big", "snapshot": snapshot_for_test(services=[svc], routes=routes)})
    assert master.recv()["op"] == "applied"
    r = httpx.get(f"http://127.0.0.1:{master.port}/p9876/x", headers={"Host": "h9876.example.com"})
    assert r.status_code == 200 and r.json()["url"] == "/p9876/x"
    r = httpx.get(f"http://127.0.0.1:{master.port}/p9876/x", headers={"Host": "h9875.example.com"})
    assert r.status_code == 404


def test_worker_exits_when_the_master_goes_away(master):
    master.ours.close()
    assert master.proc.wait(10) == 0


def test_empty_runtime_answers_no_route(master):
    time.sleep(0.2)
    r = httpx.get(f"http://127.0.0.1:{master.port}/")
    assert r.status_code == 404 and r.json() == {"message": "no Route matched with those values"}


def test_in_flight_request_finishes_on_the_runtime_it_started_with(master, origin):
    import threading

    url = f"http://127.0.0.1:{master.port}"
    master.send({"op": "config", "hash": "a", "snapshot": pass_through_snapshot_for_test(port=origin.port)})
    assert master.recv()["op"] == "applied"
    box, seen = {}, len(origin.requests)
    t = threading.Thread(target=lambda: box.setdefault("r", httpx.get(url + "/sleep/0.5", timeout=30)))
    t.start()
    deadline = time.monotonic() + 30  # the request is in flight once the origin has it (it then sleeps 0.5 s)
    while not any(r["url"] == "/sleep/0.5" for r in origin.requests[seen:]):
        assert time.monotonic() < deadline, "the request never reached the origin"
        time.sleep(0.01)
    master.send({"op": "config", "hash": "b", "snapshot": snapshot_for_test()})
    assert master.recv()["op"] == "applied"
    t.join(30)
    assert box["r"].status_code == 200 and box["r"].text == "slept"
    assert httpx.get(url + "/sleep/0").status_code == 404
