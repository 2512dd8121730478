"""docs/guides/transparent-proxy.md, install/uninstall part: every `sh` block, in order, in a namespace.

The blocks create the users `kuma-dp` (uid 5678) and `meshway-cp` if they are missing, as the guide
tells its reader to; they are left in place (other tests of the mesh use `kuma-dp` too).
"""
from __future__ import annotations

import os
import re

import pytest

from tests.netns.conftest import REPO

pytestmark = pytest.mark.netns

GUIDE = REPO / "docs" / "guides" / "transparent-proxy.md"
PART = re.compile(r"<!-- transparent-proxy install/uninstall: begin.*?-->(.*)<!-- transparent-proxy install/uninstall: end -->",
                  re.S)


def guide_blocks() -> list[str]:
    part = PART.search(GUIDE.read_text()).group(1)
    return re.findall(r"```sh\n(.*?)```", part, re.S)


def saved(netns) -> str:
    out = netns.run("iptables-save").stdout.decode()
    return "\n".join(re.sub(r" \[\d+:\d+\]$", "", line) for line in out.splitlines() if not line.startswith("#"))


def test_every_command_of_the_guide(netns):
    netns.run("iptables", "-t", "nat", "-A", "OUTPUT", "-d", "10.99.0.0/16", "-j", "RETURN")  # a foreign rule
    before = saved(netns)
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"}
    outputs, rules = [], []
    blocks = guide_blocks()
    assert len(blocks) == 6
    for block in blocks:
        done = netns.run("bash", "-euo", "pipefail", "-c", block, env=env, check=False, timeout=60)
        assert done.returncode == 0, (block, done.stderr.decode())
        outputs.append(done.stdout.decode())
        rules.append(saved(netns))
    user, dry_run, install, listing, control_plane, uninstall = outputs
    assert "+:KUMA_MESH_OUTBOUND -" in dry_run and rules[1] == before
    assert "transparent proxy setup completed successfully" in install and "-A KUMA_MESH_OUTBOUND" in listing
    assert "setup completed successfully" in control_plane
    cp_uid = netns.run("id", "-u", "meshway-cp").stdout.decode().strip()
    assert f"-m owner --uid-owner {cp_uid} -j RETURN" in rules[4]
    for chain in ("KUMA_MESH_INBOUND", "KUMA_MESH_OUTBOUND"):
        assert re.search(rf"-A {chain} -p tcp .* -m tcp --dport 5678 -j RETURN", rules[4])
    assert "-A KUMA_MESH_OUTBOUND" in uninstall and "transparent proxy cleanup completed successfully" in uninstall
    assert rules[5] == before
