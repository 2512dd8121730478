"""Real meshway nodes for tests: `node_factory` starts `meshway start` with a temp prefix."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

MESHWAY = str(Path(sys.executable).with_name("meshway"))


_PORTS_FROM, _PORTS_PER_WORKER = 12000, 2000  # below the kernel's ephemeral range (32768-60999)
_next_port: list[int] = []


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (TCP or UDP), for a server the test starts later.

    Not a kernel-chosen port: those come from the ephemeral range, where every outgoing connection
    of the 4 test workers also takes its source port, so one could take the port between this call
    and the server's bind (`Address already in use`, seen in CI). Each xdist worker hands out the
    ports of its own slice below that range in turn, from a random start."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) % 10 if worker[2:].isdigit() else 0
    base = _PORTS_FROM + index * _PORTS_PER_WORKER
    if not _next_port:
        _next_port.append(random.randrange(_PORTS_PER_WORKER))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(_PORTS_PER_WORKER):
        port = base + _next_port[0] % _PORTS_PER_WORKER
        _next_port[0] += 1
        if _bindable(family, host, port):
            return port
    raise RuntimeError(f"no free port in {base}-{base + _PORTS_PER_WORKER - 1}")


def _bindable(family: int, host: str, port: int) -> bool:
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(family, kind) as s:
                s.bind((host, port))
    except OSError:
        return False
    return True


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
    env.update(extra)
    return env


def run_cli_for_test(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([MESHWAY, *args], capture_output=True, text=True, env=env or clean_env(), timeout=timeout)


class NodeForTest:
    """A node with its prefix, conf file and URLs; `start()` runs `meshway start`."""

    def __init__(self, root: Path, name: str, settings: dict[str, str]):
        self.prefix = root / name
        self.conf = root / f"{name}.conf"
        self.host = "127.0.0.1"
        self.admin_port, self.proxy_port, self.proxy_ssl_port, self.status_port = (free_port() for _ in range(4))
        defaults = {
            "admin_listen": f"127.0.0.1:{self.admin_port}",
            "proxy_listen": f"127.0.0.1:{self.proxy_port} reuseport, 127.0.0.1:{self.proxy_ssl_port} ssl http2 reuseport",
            "status_listen": f"127.0.0.1:{self.status_port}",
            "cluster_listen": "off",
            "mesh_dp_listen": "off",
            "workers": "1",
            "log_level": "info",
        }
        self.settings = {**defaults, **settings}
        self.conf.write_text("".join(f"{k} = {v}\n" for k, v in self.settings.items()))
        self.started = False

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def proxy_ssl(self) -> str:
        return f"https://127.0.0.1:{self.proxy_ssl_port}"

    @property
    def status(self) -> str:
        return f"http://127.0.0.1:{self.status_port}"

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run_cli_for_test(*args, "-p", str(self.prefix), "-c", str(self.conf), timeout=timeout)

    def start(self, check: bool = True) -> subprocess.CompletedProcess:
        result = self.cli("start")
        self.started = result.returncode == 0
        if check:
            assert result.returncode == 0, f"start failed: {result.stdout}{result.stderr}\n{self.error_log()}"
            assert "meshway started" in result.stdout
        return result

    def stop(self) -> subprocess.CompletedProcess:
        result = self.cli("stop")
        self.started = False
        return result

    def error_log(self) -> str:
        path = self.prefix / "logs" / "error.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def node_factory(tmp_path):
    nodes: list[NodeForTest] = []

    def make(name: str = "node", **settings: str) -> NodeForTest:
        node = NodeForTest(tmp_path, name, settings)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        if node.started or (node.prefix / "pids" / "meshway.pid").exists():
            node.stop()
