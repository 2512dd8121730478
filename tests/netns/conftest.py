"""A network namespace per test: `netns.run(...)` / `netns.spawn(...)` run commands inside it.

The fixture creates `mwtest-<random>`, brings up `lo`, and at teardown kills every process it
spawned and deletes the namespace, whether the test passed or not. iptables rules live in the
namespace, so they vanish with it. Tests skip (not fail) where namespaces cannot be made:
not root, or no `ip netns` support.

TPROXY on loopback, what was needed: nothing beyond `lo up`. The walkthrough's addresses
(127.0.0.2-5) are all local on `lo` (the kernel's `local 127.0.0.0/8` route), so a packet
to 127.0.0.5 taken by `-j TPROXY` in mangle PREROUTING is already locally routed; no
`ip rule fwmark` / `ip route local` / `route_localnet` is required. Those are needed only when
the original destination is not a local address (real sidecars on other hosts' IPs): then
add `--tproxy-mark 1`, `ip rule add fwmark 1 lookup 100`, `ip route add local 0/0 dev lo table 100`.
Locally generated traffic goes OUTPUT -> lo -> PREROUTING, which is why a PREROUTING rule sees
a client process in the same namespace. For REDIRECT/DNAT, the nat table is consulted once per
connection where conntrack first sees it: the OUTPUT chain for local clients.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")


class NetnsForTest:
    """A named network namespace with `lo` up; processes spawned in it are tracked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen] = []

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, timeout: float = 10, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*argv), capture_output=True, timeout=timeout, check=check, **kw)

    def spawn(self, *argv: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.argv(*argv), **kw)
        self.procs.append(proc)
        return proc

    def wait_listening(self, host: str, port: int, timeout: float = 30) -> None:
        """Poll `ss` inside the namespace (connecting would trigger --sh-exec services)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run("ss", "-Hltn", f"src {host}:{port}", check=False).stdout
            if out.strip():
                return
            time.sleep(0.05)
        raise TimeoutError(f"nothing listens on {host}:{port} in {self.name}")

    def devserver(self, listen: str, snapshot: Path, log: Path, *extra: str) -> subprocess.Popen:
        """The stream proxy runner inside the namespace; returns once it printed `ready`."""
        proc = self.spawn(PYTHON, "-m", "meshway.proxy.stream.devserver", "--listen", listen,
                          "--snapshot", str(snapshot), *extra, stderr=log.open("w"), cwd=str(REPO))
        line = proc.stdout.readline()  # bounded: the process prints `ready` or exits (EOF)
        if not line.startswith(b"ready"):
            raise RuntimeError(f"devserver did not start: {log.read_text()}")
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


@pytest.fixture
def netns(request):
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2")
    ns = NetnsForTest(f"mwtest-{secrets.token_hex(4)}")
    created = subprocess.run(["ip", "netns", "add", ns.name], capture_output=True, timeout=10)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {created.stderr.decode().strip()}")
    request.addfinalizer(ns.cleanup)
    ns.run("ip", "link", "set", "lo", "up")
    return ns
