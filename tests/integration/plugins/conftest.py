"""Fixtures for plugin integration tests: a real redis-server, a real HTTP log receiver.

Also makes this folder's `*_for_test` helpers and the proxy's `proxy_for_test` importable
(the suite runs with --import-mode=importlib).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "proxy"))
sys.path.insert(0, str(HERE.parents[1] / "unit" / "plugins"))


def _free_port() -> int:
    from tests.helpers.node import free_port as _helpers_free_port

    return _helpers_free_port("127.0.0.1")


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server on a free port in a temp dir; yields its port."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed")
    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)
