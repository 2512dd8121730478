"""Real meshway nodes for tests: `node_factory` starts `meshway start` with a temp prefix."""
from __future__ import annotations

import fcntl
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

MESHWAY = str(Path(sys.executable).with_name("meshway"))


_PORTS_FROM, _PORTS_SPAN = 12000, 20000  # below the kernel's ephemeral range (32768-60999)
_SEQUENCE = Path(tempfile.gettempdir()) / "meshway-test-ports"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (TCP or UDP), for a server the test starts later.

    Not a kernel-chosen port: those come from the ephemeral range, where every outgoing connection
    of the test workers also takes its source port, so one could take the port between this call
    and the server's bind (`Address already in use`, seen in CI). Every test process of the machine
    (the xdist workers, and other runs at the same time) takes the next port of one sequence below
    that range, kept in a locked file, so no two of them hand out a port within 20,000 of each other."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(_PORTS_SPAN):
        port = _next_in_sequence()
        if _bindable(family, host, port):
            return port
    raise RuntimeError(f"no free port in {_PORTS_FROM}-{_PORTS_FROM + _PORTS_SPAN - 1}")


def _next_in_sequence() -> int:
    with open(_SEQUENCE, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        f.seek(0)
        text = f.read().strip()
        n = int(text) % _PORTS_SPAN if text.isdigit() else random.randrange(_PORTS_SPAN)
        f.seek(0)
        f.truncate()
        f.write(str(n + 1))
    return _PORTS_FROM + n


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


# `meshway start`'s error when a listener's address is in use; group 1 is the setting.
_TAKEN = re.compile(r"could not bind \S+ \((\w+)\):.*Address already in use")


class NodeForTest:
    """A node with its prefix, conf file and URLs; `start()` runs `meshway start`."""

    def __init__(self, root: Path, name: str, settings: dict[str, str]):
        self.prefix = root / name
        self.conf = root / f"{name}.conf"
        self.host = "127.0.0.1"
        self.given = settings
        self._choose_ports()
        self.started = self.started_once = False

    def _choose_ports(self) -> None:
        """Free ports for the listeners the test did not set, and the conf file with them."""
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
        self.settings = {**defaults, **self.given}
        self._written = "".join(f"{k} = {v}\n" for k, v in self.settings.items())
        self.conf.write_text(self._written)

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
        for _ in range(3):  # a port of ours taken since we chose it (another test's server): new ones
            taken = _TAKEN.search(result.stdout + result.stderr)
            if (result.returncode == 0 or self.started_once or not taken or taken[1] in self.given
                    or self.conf.read_text() != self._written):  # the test edited the conf: its own
                break
            self._choose_ports()
            result = self.cli("start")
        self.started = result.returncode == 0
        self.started_once = self.started_once or self.started
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
