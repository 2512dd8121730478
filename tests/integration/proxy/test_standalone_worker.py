"""The standalone worker (`python -m meshway.proxy.worker --standalone --snapshot FILE`) answers its
first connection with the snapshot's routes: it accepts only once the snapshot is applied, so a
client that connects as soon as the port listens (before `ready`) waits in the backlog instead of
getting the empty config's 404."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers.node import free_port
from tests.integration.proxy.proxy_for_test import (
    ROOT, Origin, raw_request_for_test, route_for_test, service_for_test, snapshot_for_test,
)


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.close()


def _connect_when_listening(port: int, proc: subprocess.Popen, bound: float = 60.0) -> socket.socket:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            time.sleep(0.001)
    raise AssertionError(f"the worker never listened on {port}")


def test_a_client_connecting_before_ready_gets_the_snapshots_route(origin, tmp_path):
    svc = service_for_test(port=origin.port)
    # thousands of routes: compiling them takes long enough that a client connecting as soon as the
    # port listens would, if the worker served before applying, hit the empty config
    others = [route_for_test(svc, paths=[f"/other/{i}"]) for i in range(3000)]
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(snapshot_for_test(
        services=[svc], routes=[route_for_test(svc, paths=["/first"], strip_path=False), *others])))
    port = free_port()
    env = {**os.environ, "MESHWAY_PREFIX": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "meshway.proxy.worker", "--standalone", "--snapshot", str(snap),
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=str(ROOT))
    try:
        with _connect_when_listening(port, proc) as s:
            s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert b'"url": "/first"' in answer
        assert proc.stdout.readline().startswith(b"ready")
        assert raw_request_for_test(port, b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
