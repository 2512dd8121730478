"""The service-mesh walkthrough's cast inside a namespace: real `meshway start` nodes, ncat services.

Steps 1 and 3-7 of docs/guides/service-mesh.md (Kong's streams and service mesh walkthrough with
meshway), each taken from the guide's text: Service B (four ncat listeners), a control plane on
127.0.0.1, Kong A and Kong B as data-plane sidecars started with the guide's variables, the
services and routes through the control plane's Admin API with the guide's curl commands, and
its iptables TPROXY rules.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

from tests.netns.conftest import REPO
from tests.netns.guide_for_test import guide_step_for_test

MESHWAY = str(REPO / ".venv" / "bin" / "meshway")
HELLO = b"Hello from Service B"
GUIDE = "service-mesh.md"


class MeshNodeForTest:
    """One `meshway start` node in the namespace, configured by MESHWAY_* variables."""

    def __init__(self, netns, prefix: Path, env: dict[str, str]) -> None:
        self.netns, self.prefix, self.env = netns, prefix, {"MESHWAY_PREFIX": str(prefix), **env}

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        argv = ["env", *(f"{k}={v}" for k, v in self.env.items()), MESHWAY, *args]
        return self.netns.run(*argv, timeout=timeout, check=False, text=True)

    def start(self) -> None:
        result = self.cli("start")
        assert result.returncode == 0, f"{self.prefix.name}: {result.stdout}{result.stderr}\n{self.log()}"

    def stop(self) -> None:
        if (self.prefix / "pids").exists():
            self.cli("stop", timeout=30)

    def log(self) -> str:
        return "".join(p.read_text() for p in sorted((self.prefix / "logs").glob("*.log")))


def guide_env_for_test(name: str, root: Path) -> dict[str, str]:
    """The variables docs/guides/service-mesh.md starts node `name` (kong-c, kong-a, kong-b) with,
    read from the guide itself, `$PWD` being `root`; the prefix is the caller's."""
    text = (REPO / "docs" / "guides" / "service-mesh.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if words[-2:] != ["meshway", "start"]:
                continue
            env = dict(w.split("=", 1) for w in words[:-2])
            if env.get("MESHWAY_PREFIX") == name:
                del env["MESHWAY_PREFIX"]
                return {k: v.replace("$PWD", str(root)) for k, v in env.items()}
    raise AssertionError(f"docs/guides/service-mesh.md starts no node {name}")


def start_service_b_for_test(netns) -> None:
    """Step 1: each ncat service in a console of its own (a background process here)."""
    commands = [c.text for c in guide_step_for_test(GUIDE, 1)]
    for command in commands:
        netns.spawn("bash", "-c", command)
    for command in commands:
        host, port = command.split()[-2:]
        netns.wait_listening(host, int(port), timeout=20)  # an --ssl one makes an RSA key first


def configure_for_test(netns) -> None:
    """Step 6: the guide's curl calls to the control plane's Admin API; each creates an entity."""
    for command in guide_step_for_test(GUIDE, 6):
        out = netns.run("bash", "-c", command.text, text=True).stdout
        assert '"id"' in out or not command.text.startswith("curl -X"), f"{command.text}: {out}"


def tproxy_rules_for_test(netns) -> None:
    """Step 7: the guide's iptables TPROXY rules."""
    for command in guide_step_for_test(GUIDE, 7):
        netns.run("bash", "-c", command.text)


def tcp_client_for_test(netns, *argv: str, timeout: float = 5.0) -> bytes:
    """ncat with its stdin kept open (as in a terminal) until HELLO arrives or the timeout."""
    proc = netns.spawn("ncat", *argv, stdin=subprocess.PIPE)
    os.set_blocking(proc.stdout.fileno(), False)
    got, deadline = b"", time.monotonic() + timeout
    while HELLO not in got and time.monotonic() < deadline and proc.poll() is None:
        got += proc.stdout.read() or b""
        time.sleep(0.02)
    got += proc.stdout.read() or b""
    proc.stdin.close()
    proc.kill()
    proc.wait()
    return got


def eventually_for_test(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s")


def log_mark_for_test(node: MeshNodeForTest) -> frozenset[str]:
    """The node's log lines so far: `log_line_for_test(..., after=mark)` then looks only at newer ones."""
    return frozenset(node.log().splitlines())


def log_line_for_test(node: MeshNodeForTest, *needles: str, timeout: float = 5.0,
                      after: frozenset[str] = frozenset()) -> str:
    def find() -> str | None:
        return next((ln for ln in node.log().splitlines() if ln not in after and all(n in ln for n in needles)),
                    None)

    return eventually_for_test(find, timeout, f"a log line of {node.prefix.name} with {needles}\n{node.log()[-3000:]}")
