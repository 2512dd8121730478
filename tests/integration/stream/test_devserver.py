"""The devserver runner: starts from a snapshot file, refuses a bad one with a clear message."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

from tests.integration.stream.stream_for_test import (HOST, free_port_for_test, recv_all_for_test, route_for_test,
                                                      service_for_test, snapshot_for_test)


def devserver_for_test(procs, listen: str, snapshot_path) -> subprocess.Popen:
    return procs.start(sys.executable, "-m", "meshway.proxy.stream.devserver", "--listen", listen,
                       "--snapshot", str(snapshot_path))


def test_devserver_serves_and_stops_on_sigterm(procs, echo, tmp_path):
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot_for_test([service_for_test("svc", echo.port)], [route_for_test("rt", "svc")])))
    port = free_port_for_test()
    proc = devserver_for_test(procs, f"{HOST}:{port}", path)
    assert proc.stdout.readline().decode().split() == ["ready", f"{HOST}:{port}"]
    with socket.create_connection((HOST, port), timeout=5) as client:
        client.sendall(b"hey")
        client.shutdown(socket.SHUT_WR)
        assert recv_all_for_test(client) == b"hey"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert "route=rt" in proc.stderr.read().decode()


def test_devserver_refuses_an_uncompilable_snapshot(procs, tmp_path):
    path = tmp_path / "snapshot.json"
    bad = route_for_test("broken", "svc", destinations=[{"ip": "300.1.1.1"}])
    path.write_text(json.dumps(snapshot_for_test([service_for_test("svc", 1)], [bad])))
    proc = devserver_for_test(procs, f"{HOST}:{free_port_for_test()}", path)
    assert proc.wait(10) == 1
    assert "route broken: destinations: invalid ip '300.1.1.1'" in proc.stderr.read().decode()
