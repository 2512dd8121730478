"""docs/guides/hybrid-mode.md, every command of it, as written: PostgreSQL as root, the cluster
certificate both ways, a control plane and a data plane side by side with the walkthrough's
variables, httpie calls, then stop, tail and restart. Only `/scratch` becomes a temporary
directory; the guide's fixed ports are safe inside a network namespace of the test's own."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.netns.conftest import NetnsForTest

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.postgres]
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "hybrid-mode.md"
# what a command must print before the guide goes on, and how long it may take to get there: the
# data plane follows the control plane eventually (as in Kong), reconnections back off
EXPECT = {
    "http :8000/get": ('"url"', 15.0),
    "http :8001/clustering/data-planes": ('"config_hash"', 15.0),
    "http :8001/clustering/status": ('"config_hash"', 5.0),
    "tail ": ("retry", 30.0),
    "meshway start": ("meshway started", 0.0),
    "meshway restart": ("meshway started", 0.0),
    "http :8001/services name=test": ('"port": 9000', 0.0),
}


def guide_commands_for_test(text: str) -> list[str]:
    """Each command of the guide's ```sh blocks, continuation lines joined, comments kept."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(command.strip())
    return commands


@pytest.fixture
def netns():
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("initdb"):
        pytest.skip("needs root, iproute2 and PostgreSQL")
    ns = NetnsForTest(f"mwtest-{secrets.token_hex(4)}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True, timeout=10)
    ns.run("ip", "link", "set", "lo", "up")
    try:
        yield ns
    finally:
        ns.cleanup()


def _run(ns: NetnsForTest, command: str, scratch: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # a terminal on stdin, as a reader typing the commands has (httpie reads a body from any other
    # stdin); the output stays a pipe, so httpie prints bodies only, without colours
    controller, terminal = os.openpty()
    try:
        return subprocess.run(ns.argv("bash", "-c", command), cwd=scratch, env=env, stdin=terminal,
                              capture_output=True, text=True, timeout=120)
    finally:
        os.close(controller)
        os.close(terminal)


def _expected(command: str) -> tuple[str, float] | None:
    return next((v for k, v in EXPECT.items() if command.startswith(k)), None)


def _run_until_expected(ns, command, scratch, env) -> subprocess.CompletedProcess:
    expected = _expected(command)
    deadline = time.monotonic() + (expected[1] if expected else 0)
    while True:
        result = _run(ns, command, scratch, env)
        done = result.returncode == 0 and (expected is None or expected[0] in result.stdout)
        if done or time.monotonic() >= deadline:
            return result
        time.sleep(0.2)


def test_every_command_of_the_hybrid_guide(netns):
    scratch = Path(tempfile.mkdtemp(prefix="meshway-guide-"))
    scratch.chmod(0o755)  # the guide's PostgreSQL runs as `postgres` under it
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    commands = [c.replace("/scratch", str(scratch)).replace("--daemon", f"--daemon --pid {scratch}/gunicorn.pid")
                for c in guide_commands_for_test(GUIDE.read_text())]
    assert any(c.startswith("meshway restart") for c in commands) and len(commands) > 15
    try:
        for command in commands:
            result = _run_until_expected(netns, command, scratch, env)
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            expected = _expected(command)
            assert expected is None or expected[0] in result.stdout, f"{command}\n{result.stdout}\n{result.stderr}"
        # the restarted node is the same data plane: no Admin API, the control plane's config
        assert (scratch / "dp" / ".meshway_env").read_text().count("role = data_plane") == 1
        assert _run(netns, "curl -s -o /dev/null -w '%{http_code}' localhost:8001/", scratch, env).stdout == "000"
    finally:
        for prefix in ("dp", "cp"):
            _run(netns, f"meshway stop -p {scratch / prefix}", scratch, env)
        pid = scratch / "gunicorn.pid"
        if pid.exists():
            os.kill(int(pid.read_text()), signal.SIGTERM)
        _run(netns, f"runuser -u postgres -- pg_ctl -D {scratch}/pg/data -m fast stop", scratch, env)
        shutil.rmtree(scratch, ignore_errors=True)
