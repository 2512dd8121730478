"""The multi-zone guide's topology in network namespaces, and a runner for the guide's commands.

`TopologyForTest` makes one namespace per host of docs/guides/multi-zone.md plus a `switch`
namespace holding three bridges (onprem, wan, cloud); each host gets a veth per network it is on,
with the guide's addresses. Nothing is routed between the bridges, so onprem and cloud cannot
reach each other except through the gateways, which sit on the WAN too. At teardown every
process inside the namespaces (`ip netns pids`) gets SIGTERM, then SIGKILL, and the namespaces
are deleted.

`guide_steps_for_test()` reads the guide's ```sh blocks: `# on HOST` picks the host, `export`
lines set variables for that host's later commands, a line ending in `&` is started in the
background, `cat > F <<'EOF'` heredocs are kept whole.
"""
from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

from tests.netns.conftest import REPO

GUIDE = REPO / "docs" / "guides" / "multi-zone.md"
NETWORKS = ("onprem", "wan", "cloud")
HOSTS = {  # host -> {network: address}, the guide's table
    "onprem-cp": {"onprem": "10.5.0.2/16", "wan": "192.169.7.2/24"},
    "onprem-gw": {"onprem": "10.5.0.33/16", "wan": "192.169.7.33/24"},
    "web": {"onprem": "10.5.0.10/16"},
    "cloud-cp": {"wan": "192.169.7.130/24", "cloud": "10.6.0.2/16"},
    "cloud-gw": {"wan": "192.169.7.140/24", "cloud": "10.6.0.33/16"},
    "api": {"cloud": "10.6.0.10/16"},
}


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


class TopologyForTest:
    """Seven namespaces (`mwtest-<hex>-<host>`); `run`/`spawn` inside a host."""

    def __init__(self, workdir: Path) -> None:
        self.tag = secrets.token_hex(3)
        self.workdir = workdir
        self.ns = {h: f"mwtest-{self.tag}-{h}" for h in [*HOSTS, "switch"]}
        self.env: dict[str, dict[str, str]] = {h: {} for h in HOSTS}
        self.procs: list[subprocess.Popen] = []

    def build(self) -> None:
        for name in self.ns.values():
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        sw = self.ns["switch"]
        for net in NETWORKS:
            _ip("-n", sw, "link", "add", f"br-{net}", "type", "bridge")
            _ip("-n", sw, "link", "set", f"br-{net}", "up")
        for i, (host, nets) in enumerate(HOSTS.items()):
            for j, (net, address) in enumerate(nets.items()):
                outside, inside = f"h{i}n{j}", f"eth-{net}"
                _ip("-n", sw, "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", self.ns[host])
                _ip("-n", sw, "link", "set", outside, "master", f"br-{net}", "up")
                _ip("-n", self.ns[host], "addr", "add", address, "dev", inside)
                _ip("-n", self.ns[host], "link", "set", inside, "up")

    def cut_wan(self, up: bool) -> None:
        _ip("-n", self.ns["switch"], "link", "set", "br-wan", "up" if up else "down")

    def _env(self, host: str) -> dict[str, str]:
        path = f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MESHWAY_", "CONSUL_"))}
        tmp = self.workdir / f"tmp-{host}"  # a gateway's node prefix goes there (mkdtemp)
        tmp.mkdir(exist_ok=True)
        return {**base, "PATH": path, "PWD": str(self.workdir), "TMPDIR": str(tmp), **self.env[host]}

    def run(self, host: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns[host], "bash", "-c", script], capture_output=True,
                              text=True, timeout=timeout, cwd=self.workdir, env=self._env(host))

    def spawn(self, host: str, script: str, log: Path) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[host], "bash", "-c", f"exec {script}"],
                                stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.workdir, env=self._env(host))
        self.procs.append(proc)
        return proc

    def _pids(self) -> list[int]:
        pids = []
        for name in self.ns.values():
            out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10).stdout
            pids += [int(p) for p in out.split()]
        return pids

    def cleanup(self) -> None:
        for sig, pause in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 1.0)):
            pids = self._pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + pause
            while pids and self._pids() and time.monotonic() < deadline:
                time.sleep(0.1)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def guide_steps_for_test(text: str | None = None) -> list[tuple[str, str, bool]]:
    """(host, command, background) for every command of the guide, in order."""
    text = GUIDE.read_text() if text is None else text
    steps: list[tuple[str, str, bool]] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        lines, host, i = block.splitlines(), None, 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if line.startswith("# on "):
                host = line[5:].strip()
                continue
            if not line.strip():
                continue
            assert host in HOSTS, f"guide command {line!r} has no '# on HOST' before it"
            if "<<'EOF'" in line:  # keep the heredoc whole
                end = lines.index("EOF", i)
                line, i = "\n".join([line, *lines[i:end], "EOF"]), end + 1
            background = line.rstrip().endswith("&")
            steps.append((host, line.rstrip().rstrip("&").rstrip() if background else line, background))
    return steps
