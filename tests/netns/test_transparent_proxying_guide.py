"""docs/guides/transparent-proxy.md, the `meshway dp run` part: every `sh` block, in order, on its host.

The hosts are those of test_transparent_proxying_walkthrough.py (a control plane and two service
hosts on one LAN). The install part of the guide (tested by test_transparent_proxy_guide.py) is
applied to both service hosts first, with the guide's own command. Substitutions, both because
of where this machine keeps things: `/kuma/` is a scratch directory, and `runuser -u kuma-dp --`
is a shim running `setpriv` with `dac_read_search` (the interpreter lives under /root).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

import pytest

from tests.netns.conftest import PYTHON, REPO
from tests.netns.test_transparent_proxying_walkthrough import A_IP, B_IP, CP_IP, NOBODY, as_user, lan  # noqa: F401

pytestmark = pytest.mark.netns

GUIDE = REPO / "docs" / "guides" / "transparent-proxy.md"
PART = re.compile(r"<!-- meshway dp run: begin.*?-->(.*)<!-- meshway dp run: end -->", re.S)
BLOCK = re.compile(r"<!-- on: (\w+) -->\n```sh\n(.*?)```", re.S)
RUNUSER_SHIM = """#!/bin/bash
# runuser -u USER -- CMD...: the same user, plus dac_read_search to read the interpreter under /root
[ "$1" = "-u" ] || exit 2
user=$2; shift 2; [ "$1" = "--" ] && shift
exec setpriv --reuid="$user" --regid="$user" --clear-groups --inh-caps=+dac_read_search \\
  --ambient-caps=+dac_read_search "$@"
"""


def guide_blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(PART.search(GUIDE.read_text()).group(1))


def test_every_command_of_the_dp_run_part(lan):
    scratch = Path(f"/tmp/mwtest-guide-{secrets.token_hex(4)}")
    scratch.mkdir(mode=0o755)
    try:
        _run_guide(lan, scratch)
    except BaseException:  # the data planes' and control plane's logs say why
        for log in sorted(scratch.glob("**/*.log")):
            print(f"==== {log}\n{log.read_text()[-5000:]}")
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_guide(lan, scratch: Path) -> None:
    cp, a, b = lan["cp"], lan["a"], lan["b"]
    shim = scratch / "bin"
    shim.mkdir()
    (shim / "runuser").write_text(RUNUSER_SHIM)
    (shim / "runuser").chmod(0o755)
    kuma = scratch / "kuma"
    kuma.mkdir(mode=0o777)
    os.chmod(kuma, 0o777)  # the data planes (kuma-dp) write their logs there, as the guide has them
    for host, text in ((a, "demo-client on A"), (b, "web on B")):
        root = scratch / host.label
        root.mkdir()
        (root / "index.html").write_text(f"{text}\n")
        host.spawn(*as_user(NOBODY, PYTHON, "-m", "http.server", "8080", "--directory", str(root)))
        host.wait_listening("0.0.0.0", 8080)
    env = {"PATH": f"{shim}:{REPO / '.venv' / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp",
           "CP_ADDRESS": CP_IP, "A_ADDRESS": A_IP, "B_ADDRESS": B_IP, "MESHWAY_PREFIX": str(scratch / "cp")}
    for host in (a, b):  # "Prepare the host", the guide's commands
        done = host.run("bash", "-c", "(id kuma-dp >/dev/null 2>&1 || useradd -u 5678 -U kuma-dp) && "
                        "meshway install transparent-proxy --kuma-dp-user kuma-dp --redirect-dns "
                        "--exclude-inbound-ports 22", env=env, check=False, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
    blocks = guide_blocks()
    assert [h for h, _ in blocks] == ["cp", "cp", "a", "b", "a", "b", "a", "cp", "a", "b"]
    outputs = []
    for host, block in blocks:
        script = block.replace("/kuma/", f"{kuma}/")
        done = lan[host].run("bash", "-euo", "pipefail", "-c", script, env=env, check=False, timeout=90)
        assert done.returncode == 0, (block, done.stdout.decode(), done.stderr.decode())
        outputs.append(done.stdout.decode())
    cp_start, tokens, _, _, ready_a, ready_b, reach, inspect, _, _ = outputs
    assert "meshway started" in cp_start
    assert ready_a.strip().endswith("READY") and ready_b.strip().endswith("READY")
    old_address, vip, by_name = reach.splitlines()
    assert old_address == "web on B" and vip.startswith("240.") and by_name == "web on B"
    assert "--binary-path is ignored" in (kuma / "dp-demo.log").read_text()
    listing = inspect.splitlines()
    assert listing[0].split()[:5] == ["MESH", "NAME", "TAGS", "ADDRESS", "AGE"]
    assert any("Online" in line and "dp-web" in line for line in listing)
    for host in (a, b):  # SIGTERM: deregistered
        pid = (kuma / f"dp-{'demo' if host is a else 'web'}.pid").read_text().strip()
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            __import__("time").sleep(0.1)
    after = cp.run("env", f"PATH={env['PATH']}", "meshway", "get", "dataplanes", check=False, timeout=30)
    assert after.stdout.decode().splitlines()[1:] == []
    cp.run("env", f"PATH={env['PATH']}", f"MESHWAY_PREFIX={env['MESHWAY_PREFIX']}", "meshway", "stop", check=False,
           timeout=30)
