"""The service-mesh walkthrough's cast inside a namespace: real `meshway start` nodes, ncat services.

`walkthrough_for_test(netns, root)` does steps 1 and 3-7 of
`shared/reference/kong-streams-and-service-mesh.txt` with meshway: Service B (four ncat
listeners), a control plane on 127.0.0.1, Kong A and Kong B as data-plane sidecars, the
services and routes through the control plane's Admin API with the walkthrough's own curl
commands, and its exact iptables TPROXY rules.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

from tests.netns.conftest import REPO

MESHWAY = str(REPO / ".venv" / "bin" / "meshway")
HELLO = b"Hello from Service B"
SERVICE_B = (  # port, ncat TLS flag, what it answers
    (19000, False, "echo Hello from Service B"),
    (19443, True, "echo Hello from Service B"),
    (18000, False, "echo 'HTTP/1.1 200 OK\\r\\n\\r\\nHello from Service B'"),
    (18443, True, "echo 'HTTP/1.1 200 OK\\r\\n\\r\\nHello from Service B'"),
)
ADMIN_CALLS = (  # step 6, verbatim
    ("PUT", "services/service-b-tcp", ["url=tcp://127.0.0.5:19000"]),
    ("POST", "services/service-b-tcp/routes", ["name=service-b-tcp", "protocols=tcp",
                                               "destinations[1].ip=127.0.0.5", "destinations[1].port=19000"]),
    ("PUT", "services/service-b-tls", ["url=tls://127.0.0.5:19443"]),
    ("POST", "services/service-b-tls/routes", ["name=service-b-tls", "protocols=tls",
                                               "destinations[1].ip=127.0.0.5", "destinations[1].port=19443"]),
    ("PUT", "services/service-b-http", ["url=http://127.0.0.5:18000"]),
    ("POST", "services/service-b-http/routes", ["name=service-b-http", "protocols=http", "hosts=127.0.0.5"]),
    ("PUT", "services/service-b-https", ["url=https://127.0.0.5:18443/"]),
    ("POST", "services/service-b-https/routes", ["name=service-b-https", "protocols=https", "hosts=127.0.0.5"]),
)
INTERCEPTED = ((19000, 9000), (19443, 9000), (18000, 8000), (18443, 8443))


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
    for port, tls, answer in SERVICE_B:
        netns.spawn("ncat", "--listen", "--keep-open", *(["--ssl"] if tls else []), "--sh-exec", answer,
                    "127.0.0.5", str(port))
    for port, _, _ in SERVICE_B:
        netns.wait_listening("127.0.0.5", port)


def configure_for_test(netns) -> None:
    for method, path, fields in ADMIN_CALLS:
        args = [a for f in fields for a in ("-d", f)]
        out = netns.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, *args,
                        f"http://127.0.0.1:8001/{path}", text=True).stdout
        assert out in ("200", "201"), f"{method} {path}: HTTP {out}"


def tproxy_rules_for_test(netns) -> None:
    for dport, on_port in INTERCEPTED:  # Service A -> Kong A
        netns.run("iptables", "--insert", "PREROUTING", "--table", "mangle", "--protocol", "tcp", "--dport",
                  str(dport), "--source", "127.0.0.2", "--jump", "TPROXY", f"--on-port={on_port}", "--on-ip=127.0.0.3")
    for dport, on_port in INTERCEPTED:  # anyone but Kong B -> Service B goes to Kong B
        netns.run("iptables", "--append", "PREROUTING", "--table", "mangle", "--protocol", "tcp", "!", "--source",
                  "127.0.0.4", "--dport", str(dport), "--destination", "127.0.0.5", "--jump", "TPROXY",
                  f"--on-port={on_port}", "--on-ip=127.0.0.4")


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
