"""docs/guides/mesh-high-availability.md, every `sh` block as written, in a network namespace of the
test's own (so the guide's fixed ports collide with nothing): PostgreSQL, two control planes on it,
two `dp run` data planes given both, kill -9 of each control plane in turn under traffic, a change
through the survivor. Only `/scratch` becomes a temporary directory."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.netns.conftest import NetnsForTest

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.postgres]
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "mesh-high-availability.md"
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def _online(out: str, *names: str) -> bool:
    rows = {line.split()[1]: line for line in out.splitlines()[1:] if len(line.split()) > 2}
    return all(name in rows and " Online " in f" {rows[name]} " for name in names)


# per block: (what its output must show, whether it may be run again until it does: only idempotent ones)
CHECKS = [
    (lambda out: True, False),
    (lambda out: "one mesh CA" in out, False),
    (lambda out: True, False),
    (lambda out: out == "hello from web\n", False),
    (lambda out: _online(out, "web", "client") and out.count("connected to control plane 127.0.0.1:567") >= 2, True),
    (lambda out: "0 failed requests" in out, False),
    (lambda out: "0 failed requests" in out and "web.log:trying control plane 127.0.0.1:5678" in out
     and "client.log:trying control plane 127.0.0.1:5678" in out, False),
    (lambda out: out.startswith("240.") and _online(out.split("\n", 1)[1], "web", "client"), True),
]


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
        _kill_all(ns)
        ns.cleanup()


def _kill_all(ns: NetnsForTest) -> None:
    """What the guide left running in the namespace (control planes, data planes, the app)."""
    pids = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True, timeout=10).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except ProcessLookupError:
            pass


def _run(ns: NetnsForTest, block: str, scratch: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(ns.argv("bash", "-euo", "pipefail", "-c", block), cwd=scratch, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def test_every_command_of_the_mesh_ha_guide(netns):
    scratch = Path(tempfile.mkdtemp(prefix="meshway-guide-"))
    scratch.chmod(0o755)  # the guide's PostgreSQL runs as `postgres` under it
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    blocks = [b.replace("/scratch", str(scratch)) for b in BLOCK.findall(GUIDE.read_text())]
    assert len(blocks) == len(CHECKS)
    try:
        for block, (check, again) in zip(blocks, CHECKS):
            deadline = time.monotonic() + (90 if again else 0)
            while True:
                done = _run(netns, block, scratch, env)
                if (done.returncode == 0 and check(done.stdout)) or time.monotonic() >= deadline:
                    break
                time.sleep(0.5)
            assert done.returncode == 0 and check(done.stdout), (block, done.stdout[-3000:], done.stderr[-3000:])
    finally:
        _run(netns, f"runuser -u postgres -- pg_ctl -D {scratch}/pg/data -m fast stop", scratch, env)
        shutil.rmtree(scratch, ignore_errors=True)
