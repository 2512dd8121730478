"""Transparent proxying across zones: after docs/guides/multi-zone.md (api runs only in cloud, the
resolver sends onprem's calls for it there, `protocol = "http"`), web's host gets Kuma's
transparent proxy and web's data plane runs with `transparentProxying`. An app on web's host calls
`http://api.mesh/`: DNS answers a VIP (onprem reserved one for the service cloud reports), the
connection to it is redirected to web's sidecar, which sends it through both mesh gateways with
Consul's SNI, mutual TLS to api's sidecar; a source cloud's MeshTrafficPermissions deny is
refused by api's sidecar."""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.netns.test_multi_zone_guide import ANSWER, eventually, run_guide, topology  # noqa: F401 (fixture)

pytestmark = pytest.mark.netns

CAPS = ["--clear-groups", "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
WEB_TP = """\
type: Dataplane
mesh: default
name: web
networking:
  address: 10.5.0.10
  inbound:
  - port: 20000
    servicePort: 9090
    tags:
      kuma.io/service: web
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
"""
PERMISSION = """\
type: MeshTrafficPermission
name: web-to-api
mesh: default
spec:
  targetRef:
    kind: MeshService
    name: api
  from:
  - targetRef:
      kind: MeshService
      name: web
    default:
      action: {action}
"""


def test_an_app_calls_a_service_of_the_other_zone_by_its_mesh_name(topology):
    topo = topology
    etc = Path("/etc/netns") / topo.ns["web"]  # `ip netns exec` mounts it: the DNS server the rules name
    etc.mkdir(parents=True, exist_ok=True)
    try:
        _walk(topo, etc)
    finally:
        shutil.rmtree(etc, ignore_errors=True)


def _walk(topo, etc: Path) -> None:
    run_guide(topo)
    # cloud denies web before web's new sidecar makes its first connection (a kept-alive
    # connection keeps the verdict it got)
    (topo.workdir / "web-to-api.yaml").write_text(PERMISSION.format(action="Deny"))
    applied = topo.run("cloud-cp", "meshway apply -f web-to-api.yaml --admin-token $CONSUL_HTTP_TOKEN")
    assert applied.returncode == 0, applied.stderr

    # web's data plane of the guide leaves; web's host gets the transparent proxy
    guide_dp = next(p for p in topo.procs if "web.yaml" in " ".join(map(str, p.args)))
    guide_dp.send_signal(signal.SIGTERM)
    guide_dp.wait(30)
    (etc / "resolv.conf").write_text("nameserver 10.5.0.2\n")
    # a connection to a VIP (240.0.0.0/4) needs a route before the rules redirect it: onprem's link
    # (nothing answers there for cloud's addresses)
    assert topo.run("web", "ip route add default dev eth-onprem").returncode == 0
    assert topo.run("web", "id kuma-dp >/dev/null 2>&1 || useradd -u 5678 -U kuma-dp").returncode == 0
    done = topo.run("web", "meshway install transparent-proxy --kuma-dp-user kuma-dp --redirect-dns")
    assert done.returncode == 0, done.stderr
    (topo.workdir / "web-tp.yaml").write_text(WEB_TP)
    work = topo.workdir / "web-tp"
    work.mkdir()
    os.chown(work, 5678, 5678)
    topo.spawn("web", " ".join(["setpriv", "--reuid=5678", "--regid=5678", *CAPS, "meshway", "dp", "run",
                                "--cp-address", "https://10.5.0.2:5678", "--dataplane-token-file", "web.token",
                                "--dataplane-file", "web-tp.yaml", "--work-dir", str(work), "--",
                                "python3", "-m", "http.server", "9090", "--bind", "10.5.0.10"]),
               topo.workdir / "web-tp.log")
    eventually(lambda: topo.run("web", "curl -sf http://127.0.0.1:9902/ready").returncode == 0,
               what="web's transparent data plane ready")

    # DNS: api runs only in cloud, and its name answers a VIP here
    vip = eventually(lambda: topo.run("web", "dig +short +time=2 +tries=1 api.mesh").stdout.strip(),
                     what="api.mesh resolves on web's host")
    assert vip.startswith("240."), vip

    # denied by cloud's permissions: api's sidecar refuses web's sidecar (after the handshake, which
    # proves who calls), and names the policy
    api_log = topo.workdir / "api-dp" / "logs" / "access.log"

    def refused() -> str | None:
        status = topo.run("web", "curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://api.mesh/").stdout
        line = next((ln for ln in reversed(api_log.read_text().splitlines()) if "close=mesh_denied" in ln), None)
        return line if status in ("403", "502") else None

    line = eventually(refused, what="api's sidecar refuses web")
    assert "sni=api.default.cloud.internal.mesh.meshway" in line and "mtls=yes peer=spiffe://meshway/" in line, line

    # allowed: the app's call by name goes through both gateways to api
    (topo.workdir / "web-to-api.yaml").write_text(PERMISSION.format(action="Allow"))
    applied = topo.run("cloud-cp", "meshway apply -f web-to-api.yaml --admin-token $CONSUL_HTTP_TOKEN")
    assert applied.returncode == 0, applied.stderr
    eventually(lambda: topo.run("web", "curl -s --max-time 5 http://api.mesh/").stdout == ANSWER,
               what="web's app reaches api.mesh")
    # the app's connection was to the VIP (the rules sent it to the sidecar): web's sidecar logged
    # the request on its HTTP path, answered by api's sidecar over mutual TLS
    web_log = work / "logs" / "access.log"  # written once a second
    line = eventually(lambda: next((ln for ln in reversed(web_log.read_text().splitlines())
                                    if '"GET / HTTP/1.1" 200' in ln), None), what="web's sidecar logged the call")
    assert "mtls=yes peer=spiffe://meshway/" in line, line
    # web's host still cannot reach api's host: only the gateways bridge the networks
    assert topo.run("web", "curl -s --max-time 2 http://10.6.0.10:9090/", timeout=10).returncode != 0

