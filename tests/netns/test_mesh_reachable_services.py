"""Reachable services (the transparent-proxying document's "Reachable Services" section) on the
document's LAN: the control plane's host and two service hosts with `meshway install
transparent-proxy --redirect-dns` and `meshway dp run` as `kuma-dp`.

Host A's Dataplane lists `transparentProxying.reachableServices: [greeter]`: its data plane gets
greeter only, so greeter works by its old address and as `greeter.mesh`, while web (on the same
host B) is refused by A's own data plane (an HTTP 403 that says so, logged) and `web.mesh` is not
answered (NXDOMAIN, logged). Then A without a list, with mTLS on: what A may reach follows the
MeshTrafficPermissions (beyond Kuma, where it is an experimental flag), DNS included, and
`meshway explain` says the same as the traffic."""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest

from tests.netns.conftest import PYTHON
from tests.netns.test_transparent_proxying_walkthrough import (A_IP, B_DATAPLANE, B_IP, KUMA_DP, MESHWAY, NOBODY,
                                                              Host, as_user, dp_run, eventually, lan, ready,  # noqa: F401
                                                              start_control_plane)

pytestmark = pytest.mark.netns

A_LISTED = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: {{ address }}
  inbound:
  - port: {{ port }}
    tags:
      kuma.io/service: demo-client
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
    reachableServices:
    - greeter
"""
A_UNLISTED = A_LISTED.replace("    reachableServices:\n    - greeter\n", "")
MTLS_ON = """\
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
"""
ALLOW_WEB = """\
type: MeshTrafficPermission
name: demo-client-to-web
mesh: default
spec:
  targetRef:
    kind: MeshService
    name: web
  from:
  - targetRef:
      kind: MeshService
      name: demo-client
    default:
      action: Allow
"""
NOT_REACHABLE = "service web is not reachable from this data plane"


def test_reachable_services(lan):
    cp, a, b = lan["cp"], lan["a"], lan["b"]
    shared = Path(f"/tmp/mwtest-reach-{secrets.token_hex(4)}")  # readable by kuma-dp
    shared.mkdir(mode=0o755)
    try:
        _scenario(cp, a, b, shared)
    except BaseException:
        for log in sorted(shared.glob("**/*.log")):
            print(f"==== {log}\n{log.read_text()[-6000:]}")
        raise
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _greeter(a: Host) -> str:
    return a.out("ncat", "--recv-only", "-w", "5", B_IP, "19000")


def _apply(cp: Host, shared: Path, text: str) -> None:
    path = shared / f"resource-{secrets.token_hex(3)}.yaml"
    path.write_text(text)
    done = cp.sh(MESHWAY, "apply", "-f", str(path))
    assert done.returncode == 0, done.stderr.decode()


def _scenario(cp: Host, a: Host, b: Host, shared: Path) -> None:
    root = shared / "b"
    root.mkdir()
    (root / "index.html").write_text("web on B\n")
    b.spawn(*as_user(NOBODY, PYTHON, "-m", "http.server", "8080", "--directory", str(root)))
    b.spawn(*as_user(NOBODY, "ncat", "--listen", "--keep-open", "--sh-exec", "echo Hello from B", "0.0.0.0", "19000"))
    b.wait_listening("0.0.0.0", 8080)
    b.wait_listening("0.0.0.0", 19000)
    prefix = shared / "cp"
    start_control_plane(cp, prefix)
    tokens = {}
    for name in ("dp-a", "dp-b"):
        made = cp.sh(MESHWAY, "generate", "dataplane-token", "--name", name, "--mesh", "default")
        assert made.returncode == 0, made.stderr.decode()
        tokens[name] = shared / f"token-{name}"
        tokens[name].write_text(made.stdout.decode())
        tokens[name].chmod(0o644)
    for host in (a, b):
        assert host.sh("bash", "-c", "id kuma-dp >/dev/null 2>&1 || useradd -u 5678 -U kuma-dp").returncode == 0
        done = host.sh(MESHWAY, "install", "transparent-proxy", "--kuma-dp-user", "kuma-dp", "--redirect-dns",
                       "--exclude-inbound-ports", "22")
        assert done.returncode == 0, done.stderr.decode()
    templates = {"listed": shared / "dpyaml-a-listed", "unlisted": shared / "dpyaml-a", "b": shared / "dpyaml-b"}
    templates["listed"].write_text(A_LISTED)
    templates["unlisted"].write_text(A_UNLISTED)
    templates["b"].write_text(B_DATAPLANE)
    works = {label: shared / f"work-{label}" for label in ("a", "b")}
    for path in works.values():
        path.mkdir()
        os.chown(path, int(KUMA_DP), int(KUMA_DP))
    proc_b = dp_run(b, works["b"], tokens["dp-b"], templates["b"], "dp-b", B_IP)
    proc_a = dp_run(a, works["a"], tokens["dp-a"], templates["listed"], "dp-a", A_IP)
    for host in (a, b):
        eventually(lambda: ready(host), 30, f"{host.label}'s data plane ready")

    # mTLS off: only the list applies. greeter is listed: old address and greeter.mesh work
    eventually(lambda: _greeter(a) == "Hello from B", what="greeter through the mesh")
    assert a.dig("greeter.mesh", "+short").startswith("240.")
    # web is not: A's own data plane refuses it with a 403 that says so, and logs it
    eventually(lambda: NOT_REACHABLE in a.curl(f"http://{B_IP}:8080/"), what="web refused by A")
    log_a = shared / "dp-a.log"
    eventually(lambda: "close=mesh_unreachable" in (works["a"] / "logs" / "access.log").read_text(),
               what="refusal in A's access log")
    # ... and does not answer web.mesh (NXDOMAIN, not forwarded), saying why in its log
    assert "status: NXDOMAIN" in a.dig("web.mesh")
    eventually(lambda: "DNS web.mesh: NXDOMAIN, a mesh service this data plane may not reach" in log_a.read_text(),
               what="DNS refusal logged")
    assert b.dig("web.mesh", "+short").startswith("240.")  # B has no list: it resolves there
    said = cp.sh(MESHWAY, "explain", "dp-a", "web.mesh")
    assert said.returncode == 3 and b"not among its reachable services" in said.stdout, said.stdout
    assert cp.sh(MESHWAY, "explain", "dp-a", "greeter").returncode == 0

    # A without a list, mTLS on: the permissions decide what A reaches (nothing allows anything yet)
    proc_a.send_signal(15)
    assert proc_a.wait(30) == 0
    proc_a = dp_run(a, works["a"], tokens["dp-a"], templates["unlisted"], "dp-a", A_IP)
    eventually(lambda: ready(a), 30, "A's data plane ready again")
    eventually(lambda: a.dig("web.mesh", "+short").startswith("240."), what="web.mesh with no list, mTLS off")
    _apply(cp, shared, MTLS_ON)
    eventually(lambda: "status: NXDOMAIN" in a.dig("web.mesh"), what="web.mesh hidden: no permission")
    assert "status: NXDOMAIN" in a.dig("greeter.mesh")
    # a permission for demo-client -> web: web (and only web) becomes reachable, name and traffic
    _apply(cp, shared, ALLOW_WEB)
    eventually(lambda: a.dig("web.mesh", "+short").startswith("240."), what="web.mesh back")
    eventually(lambda: a.curl("http://web.mesh/") == "web on B", what="web through the mesh, mTLS on")
    assert "status: NXDOMAIN" in a.dig("greeter.mesh")
    assert _greeter(a) != "Hello from B"
    said = cp.sh(MESHWAY, "explain", "dp-a", "web")
    assert said.returncode == 0 and b"ALLOWED: MeshTrafficPermission demo-client-to-web from[0]: Allow" in said.stdout
    said = cp.sh(MESHWAY, "explain", "dp-a", "greeter.mesh")
    assert said.returncode == 3 and b"not among its reachable services" in said.stdout, said.stdout
    for proc in (proc_a, proc_b):
        proc.send_signal(15)
        proc.wait(30)
    cp.sh(MESHWAY, "stop", "-p", str(prefix))
