"""docs/guides/service-mesh.md, every command of it, read from the guide and run as written.

The guide's host is a network namespace and a PID namespace of the test's own: its fixed
addresses and ports collide with nothing, its iptables rules stay inside, and its last step's
`pkill tail` / `pkill ncat` reach only the processes the guide started. Commands the guide runs
in consoles of their own (the ncat services, `tail -F`) run in the background, as its "add `&`"
says; every other command must succeed and print what its comment promises (the sidecars
follow the control plane eventually, so those checks retry for a while).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.netns.conftest import NetnsForTest
from tests.netns.guide_for_test import GuideCommand, guide_commands_for_test

pytestmark = [pytest.mark.netns, pytest.mark.slow]
CONSOLES = ("ncat --listen", "tail -F")  # commands that run until stopped, each in its console
# what a command prints when it worked, where the guide says so in its prose rather than a comment
PRINTS = {
    "meshway start": "meshway started",  # "You should see `meshway started`"
    "meshway stop": "meshway stopped",
    "curl -X ": '"id"',  # the entity created
    "curl -s http://127.0.0.1:8001/clustering/data-planes": '"config_hash"',
}
PATIENCE = 30.0  # seconds a promise may take: a data plane gets the config in the next push
REAPER = ("import os, time\nwhile True:\n    try:\n        os.wait()\n"
          "    except ChildProcessError:\n        time.sleep(0.05)\n")


class GuideHostForTest:
    """A netns plus a PID namespace (with a reaping init) in which the guide's commands run."""

    def __init__(self, netns: NetnsForTest, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env
        self.init = subprocess.Popen(netns.argv("unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                                                "-c", REAPER))
        self.pid = self._init_pid()
        self.background: list[tuple[str, subprocess.Popen, Path]] = []

    def _init_pid(self) -> int:
        children = Path(f"/proc/{self.init.pid}/task/{self.init.pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pids = children.read_text().split() if children.exists() else []
            if pids:
                return int(pids[0])
            time.sleep(0.02)
        raise AssertionError("the PID namespace's init did not start")

    def argv(self, command: str, timeout: float) -> list[str]:
        # GNU timeout signals its whole process group: a compound command leaves nothing behind
        return ["nsenter", "-t", str(self.pid), "-n", "-m", "-p", "--", "timeout", "-k", "2", str(timeout),
                "bash", "-c", f"cd {self.cwd} && {command}"]

    def run(self, command: str, promise: str = "", timeout: float = 20) -> tuple[int | None, str, str]:
        """(exit status, stdout, stderr); once stdout shows `promise` the command is stopped as a
        reader would (^C: ncat keeps reading the terminal after the service closed), status None."""
        # a terminal on stdin, as a reader typing the commands has
        controller, terminal = os.openpty()
        try:
            proc = subprocess.Popen(self.argv(command, timeout), env=self.env, stdin=terminal, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            seen = self._read_until(proc, promise, timeout) if promise else ""
            if promise and promise in seen and proc.poll() is None:
                self._interrupt(proc)
                out, err = proc.communicate(timeout=10)
                return None, seen + out.decode(errors="replace"), err.decode(errors="replace")
            out, err = proc.communicate(timeout=timeout + 10)
            return proc.returncode, seen + out.decode(errors="replace"), err.decode(errors="replace")
        finally:
            os.close(controller)
            os.close(terminal)

    @staticmethod
    def _read_until(proc: subprocess.Popen, promise: str, timeout: float) -> str:
        os.set_blocking(proc.stdout.fileno(), False)
        seen, deadline = b"", time.monotonic() + timeout
        while promise.encode() not in seen and proc.poll() is None and time.monotonic() < deadline:
            seen += proc.stdout.read() or b""
            time.sleep(0.02)
        os.set_blocking(proc.stdout.fileno(), True)
        return seen.decode(errors="replace")

    @staticmethod
    def _interrupt(proc: subprocess.Popen) -> None:
        """SIGINT to the command's process group: nsenter's child, `timeout`, leads it."""
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        for pid in (children.read_text().split() if children.exists() else []):
            try:
                os.killpg(int(pid), signal.SIGINT)
            except ProcessLookupError:
                pass

    def start(self, command: str) -> None:
        out = self.cwd / f"console-{len(self.background)}.out"
        with out.open("w") as sink:
            proc = subprocess.Popen(self.argv(command, 600), env=self.env, stdin=subprocess.DEVNULL, stdout=sink,
                                    stderr=subprocess.STDOUT)
        self.background.append((command, proc, out))

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)  # the namespace's init: the kernel ends every process in it
        except ProcessLookupError:
            pass
        self.init.wait(10)
        for _, proc, _ in self.background:
            proc.wait(10)


def _promise(command: GuideCommand) -> str:
    if command.promise:
        return command.promise
    text = command.text
    return next((v for k, v in PRINTS.items() if text.startswith(k) or text.endswith(k)), "")


def _run_as_promised(host: GuideHostForTest, command: GuideCommand) -> tuple[int | None, str, str]:
    promise = _promise(command)
    deadline = time.monotonic() + (PATIENCE if promise else 0)
    while True:
        status, out, err = host.run(command.text, promise)
        if status in (0, None) and promise in out or time.monotonic() >= deadline:
            return status, out, err
        time.sleep(0.3)


def _wait_listening(host: GuideHostForTest, command: str) -> None:
    """A service of step 1 listens before the next command talks to it (a reader waits too)."""
    address, port = command.split()[-2:]
    deadline = time.monotonic() + 10
    while not host.run(f"ss -Hltn 'src {address}:{port}'")[1].strip():
        assert time.monotonic() < deadline, f"{command}: nothing listens"
        time.sleep(0.05)


@pytest.fixture
def host(tmp_path):
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "ncat", "nsenter", "unshare", "iptables")):
        pytest.skip("needs root, iproute2, ncat, util-linux and iptables")
    ns = NetnsForTest(f"mwtest-{secrets.token_hex(4)}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True, timeout=10)
    ns.run("ip", "link", "set", "lo", "up")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # "meshway on the PATH"
    tmp_path.chmod(0o755)
    guide_host = GuideHostForTest(ns, tmp_path, env)
    try:
        yield guide_host
    finally:
        guide_host.close()
        ns.cleanup()


def test_every_command_of_the_service_mesh_guide(host):
    commands = guide_commands_for_test("service-mesh.md")
    assert len(commands) > 30 and commands[-1].text == "pkill ncat"
    for command in commands:
        if command.text.startswith(CONSOLES):
            host.start(command.text)
            if command.text.startswith("ncat --listen"):
                _wait_listening(host, command.text)
            continue
        status, out, err = _run_as_promised(host, command)
        said = f"{command.section}: {command.text}\n{out}\n{err}"
        assert status in (0, None) and _promise(command) in out, said
    # step 10's pkill ended every console the guide opened
    for text, proc, out in host.background:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after step 10: {text}") from None
    # step 8's consoles showed step 9 go through the sidecars over the mesh
    watched = [out.read_text() for text, _, out in host.background if text.startswith("tail -F kong-a")]
    assert watched and "route=service-b-tcp" in watched[0] and "mtls=yes" in watched[0], watched
