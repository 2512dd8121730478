"""The document's workflow on loopback: two federated zones (onprem, cloud), a mesh gateway in
each, `web`'s sidecar in onprem calling `api` in cloud. Before the resolver the call fails with the
reason in web's sidecar log; after `config write global_defaults.hcl api_resolver.hcl` it goes
web's sidecar -> onprem's gateway -> cloud's gateway -> api's sidecar -> api (mode local), then
straight to cloud's gateway (mode remote), with mutual TLS between the two sidecars and the
gateways only passing TLS through."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.node import MESHWAY, NodeForTest, clean_env, free_port

DATA = Path(__file__).parents[2] / "data" / "zones"
MTLS_ON = "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n"
ALLOW_ALL = """\
type: MeshTrafficPermission
name: allow-all
mesh: default
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
"""
API = """\
type: Dataplane
mesh: default
name: api
networking:
  address: 127.0.0.1
  inbound:
  - port: {port}
    servicePort: {app_port}
    tags:
      kuma.io/service: api
"""
WEB = """\
type: Dataplane
mesh: default
name: web
networking:
  address: 127.0.0.1
  inbound:
  - port: {port}
    servicePort: {app_port}
    tags:
      kuma.io/service: web
  outbound:
  - port: {api_out}
    tags:
      kuma.io/service: api
"""


# global_defaults.hcl makes every service `protocol = "http"`; here api's calls stay streams (one
# connection per call, so each call is logged by every hop as it ends, and each is checked against
# the permissions): test_cross_zone_http.py covers the HTTP path
API_TCP = '{"Kind": "service-defaults", "Name": "api", "Protocol": "tcp"}'


def wait_for(cond, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except (httpx.HTTPError, OSError, ValueError, KeyError) as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s (last: {last!r})")


class Zone:
    """A control plane (datacenter NAME) with its `dp run` listener, and what runs in it."""

    def __init__(self, tmp: Path, name: str, **settings: str):
        self.tmp, self.name = tmp, name
        self.dp_port = free_port()
        self.cp = NodeForTest(tmp, f"{name}-cp", {"role": "control_plane", "proxy_listen": "off", "datacenter": name,
                                                  "mesh_dp_listen": f"127.0.0.1:{self.dp_port}", **settings})
        self.procs: list[subprocess.Popen] = []

    def meshway(self, *args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([MESHWAY, *args, "--cp-address", self.cp.admin], input=stdin, capture_output=True,
                              text=True, env=clean_env(), timeout=60, cwd=cwd)

    def apply(self, text: str) -> None:
        done = self.meshway("apply", "-f", "-", stdin=text)
        assert done.returncode == 0, done.stderr

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{self.name}-{name}.log", "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{self.name}-{name}"
        return (path if "/" in name else path.with_name(path.name + ".log")).read_text()

    def gateway(self, lan: int, wan: int) -> None:
        self.spawn("gateway", [MESHWAY, "connect", "envoy", "-mesh-gateway", "-register",
                               "-address", f"127.0.0.1:{lan}", "-wan-address", f"127.0.0.1:{wan}",
                               "-admin-bind", f"127.0.0.1:{free_port()}", "-work-dir", str(self.tmp / f"{self.name}-gw"),
                               "-http-addr", self.cp.admin])

    def dataplane(self, name: str, template: str, app: list[str]) -> int:
        token = self.meshway("generate", "dataplane-token", "--name", name, "--mesh", "default")
        assert token.returncode == 0, token.stderr
        (self.tmp / f"{self.name}-{name}.token").write_text(token.stdout)
        (self.tmp / f"{self.name}-{name}.yaml").write_text(template)
        ready = free_port()
        self.spawn(name, [MESHWAY, "dp", "run", f"--cp-address=https://127.0.0.1:{self.dp_port}",
                          f"--dataplane-token-file={self.tmp / f'{self.name}-{name}.token'}",
                          f"--dataplane-file={self.tmp / f'{self.name}-{name}.yaml'}",
                          "--readiness-port", str(ready), "--dns-enabled=false",
                          "--work-dir", str(self.tmp / f"{self.name}-{name}-work"), "--", *app])
        return ready

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.cp.stop()


@pytest.fixture
def zones(tmp_path):
    onprem = Zone(tmp_path, "onprem")
    onprem.cp.start()
    cloud = Zone(tmp_path, "cloud", primary_datacenter="onprem", retry_join_wan=f"127.0.0.1:{onprem.cp.admin_port}",
                 retry_interval_wan="0.5")
    cloud.cp.start()
    yield onprem, cloud
    cloud.stop()
    onprem.stop()


def http_app(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def test_web_reaches_api_in_the_other_zone_through_both_gateways(zones, tmp_path):
    onprem, cloud = zones
    for zone in (onprem, cloud):
        zone.apply(MTLS_ON)
        zone.apply(ALLOW_ALL)
    onprem.gateway(onprem_lan := free_port(), free_port())
    cloud.gateway(free_port(), cloud_wan := free_port())
    api_port, api_app = free_port(), free_port()
    (tmp_path / "api-root").mkdir()
    (tmp_path / "api-root" / "index.html").write_text("hello from api in cloud\n")
    api_ready = cloud.dataplane("api", API.format(port=api_port, app_port=api_app),
                                [sys.executable, "-m", "http.server", str(api_app), "--bind", "127.0.0.1",
                                 "--directory", str(tmp_path / "api-root")])
    web_port, web_app, api_out = free_port(), free_port(), free_port()
    web_ready = onprem.dataplane("web", WEB.format(port=web_port, app_port=web_app, api_out=api_out), http_app(web_app))
    for ready in (api_ready, web_ready):
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{ready}/ready").status_code == 200, what="data planes ready")
    wait_for(lambda: {z["name"]: z for z in httpx.get(f"{onprem.cp.admin}/zones").json()["items"]}["cloud"]["gateways"],
             what="onprem knows cloud's gateway")

    # by default api resolves to onprem, where it does not run: the call fails, web's sidecar says why
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{api_out}/", timeout=5)
    wait_for(lambda: "no-healthy-instance-of-api-in-datacenter-onprem" in onprem.log("web-work/logs/error.log"),
             what="the reason logged")

    explained = onprem.meshway("explain", "web", "api")
    assert explained.returncode == 3, explained.stdout + explained.stderr
    assert "REFUSED by the source's data plane: no healthy instance of api in datacenter onprem" in explained.stdout

    assert onprem.meshway("config", "write", "-", stdin=API_TCP).returncode == 0
    for name in ("global_defaults.hcl", "api_resolver.hcl"):  # cd l7_config; consul config write ...
        shutil.copy(DATA / name, tmp_path / name)
        written = onprem.meshway("config", "write", name, cwd=tmp_path)
        assert written.returncode == 0, written.stderr
    answer = wait_for(lambda: httpx.get(f"http://127.0.0.1:{api_out}/", timeout=5), what="web reaches api")
    assert answer.status_code == 200 and answer.text == "hello from api in cloud\n"
    explained = onprem.meshway("explain", "web", "api")
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "resolves to api in datacenter cloud, service-resolver api" in explained.stdout
    assert "path (MeshGateway mode local): web -> gateway@onprem -> gateway@cloud -> api@cloud" in explained.stdout
    sni = "sni=api.default.cloud.internal.mesh.meshway"
    # web's sidecar dialled onprem's gateway with mutual TLS and Consul's SNI for api in cloud
    line = wait_for(lambda: last_line(onprem.log("web-work/logs/access.log"), f"upstream=127.0.0.1:{onprem_lan} "),
                    what="web's sidecar logged the call")
    assert "mtls=yes" in line and "peer=spiffe://meshway/node/" in line, line
    # both gateways passed it through by SNI, never terminating it
    line = wait_for(lambda: last_line(onprem.log("gw/node/logs/access.log"), sni), what="onprem's gateway logged it")
    assert "route=remote-cloud mode=passthrough" in line and f"upstream=127.0.0.1:{cloud_wan}" in line, line
    line = wait_for(lambda: last_line(cloud.log("gw/node/logs/access.log"), sni), what="cloud's gateway logged it")
    assert "route=local-default-api mode=passthrough" in line and f"upstream=127.0.0.1:{api_port}" in line, line
    # api's sidecar terminated it: mutual TLS with web's sidecar, whose identity it logged
    line = wait_for(lambda: last_line(cloud.log("api-work/logs/access.log"), sni), what="api's sidecar logged it")
    assert "mode=mesh" in line and "mtls=yes peer=spiffe://meshway/node/" in line, line

    # mode remote: straight to cloud's gateway, still end to end
    remote = '{"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "remote"}}'
    assert onprem.meshway("config", "write", "-", stdin=remote).returncode == 0
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{api_out}/", timeout=5).text == "hello from api in cloud\n"
             and last_line(onprem.log("web-work/logs/access.log"), f"upstream=127.0.0.1:{cloud_wan} "),
             what="mode remote: web's sidecar dials cloud's gateway")

    # service-intentions (written at the primary, reaching cloud): a deny is enforced by api's
    # sidecar, which closes web's call and logs the intention; `meshway explain` names it
    deny = 'Kind = "service-intentions"\nName = "api"\nSources = [\n  {\n    Name   = "web"\n    Action = "deny"\n  }\n]\n'
    assert onprem.meshway("config", "write", "-", stdin=deny).returncode == 0
    line = wait_for(lambda: not _answers(api_out) and last_line(cloud.log("api-work/logs/access.log"),
                                                                "close=mesh_denied"), what="api's sidecar refuses web")
    assert 'error="service-intentions api Sources[0]: deny"' in line and "sni=api.default.cloud.internal" in line, line
    explained = onprem.meshway("explain", "web", "api")
    assert explained.returncode == 3, explained.stdout + explained.stderr
    assert ("REFUSED by the destination's data plane (in cloud): service-intentions api Sources[0]: deny"
            in explained.stdout), explained.stdout
    # Consul's precedence: web's own allow (9) beats the deny for any source (8)
    allow = ('{"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Action": "deny"}, '
             '{"Name": "web", "Action": "allow"}]}')
    assert onprem.meshway("config", "write", "-", stdin=allow).returncode == 0
    wait_for(lambda: _answers(api_out), what="the allow intention lets web in again")
    assert onprem.meshway("explain", "web", "api").returncode == 0
    assert onprem.meshway("config", "delete", "-kind", "service-intentions", "-name", "api").returncode == 0

    # the identity is checked end to end: an instance of api that answers with another service's
    # certificate (billing's sidecar, registered as api) is refused by web's sidecar
    billing_port, billing_app = free_port(), free_port()
    billing_ready = cloud.dataplane("billing", API.replace("name: api", "name: billing").replace(
        "kuma.io/service: api", "kuma.io/service: billing").format(port=billing_port, app_port=billing_app),
        http_app(billing_app))
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{billing_ready}/ready").status_code == 200, what="billing ready")
    cloud.procs[1].send_signal(signal.SIGTERM)  # api's data plane leaves (deregistered)...
    cloud.procs[1].wait(20)
    cloud.apply(API.replace("name: api", "name: api-imposter").format(port=billing_port, app_port=billing_app))
    wait_for(lambda: "is not spiffe://meshway/mesh/default/service/api" in onprem.log("web-work/logs/error.log")
             if not _answers(api_out) else False, what="web's sidecar refuses the imposter")


def test_a_mesh_with_mtls_off_still_crosses_zones_with_mutual_tls(zones, tmp_path):
    """Issue 14: end-to-end mutual TLS between the two sidecars even when the mesh's mTLS is off
    (the gateways route on SNI; with mTLS off everything is allowed, as in Kuma)."""
    onprem, cloud = zones
    onprem.gateway(free_port(), free_port())
    cloud.gateway(free_port(), free_port())
    api_port, api_app = free_port(), free_port()
    (tmp_path / "api-root").mkdir()
    (tmp_path / "api-root" / "index.html").write_text("hello from api in cloud\n")
    api_ready = cloud.dataplane("api", API.format(port=api_port, app_port=api_app),
                                [sys.executable, "-m", "http.server", str(api_app), "--bind", "127.0.0.1",
                                 "--directory", str(tmp_path / "api-root")])
    web_port, web_app, api_out = free_port(), free_port(), free_port()
    web_ready = onprem.dataplane("web", WEB.format(port=web_port, app_port=web_app, api_out=api_out), http_app(web_app))
    for ready in (api_ready, web_ready):
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{ready}/ready").status_code == 200, what="data planes ready")
    assert onprem.meshway("config", "write", "-", stdin=API_TCP).returncode == 0
    for name in ("global_defaults.hcl", "api_resolver.hcl"):
        assert onprem.meshway("config", "write", str(DATA / name)).returncode == 0
    answer = wait_for(lambda: httpx.get(f"http://127.0.0.1:{api_out}/", timeout=5), what="web reaches api")
    assert answer.text == "hello from api in cloud\n"
    line = wait_for(lambda: last_line(cloud.log("api-work/logs/access.log"), "sni=api.default.cloud.internal"),
                    what="api's sidecar logged it")
    assert "mode=mesh" in line and "mtls=yes peer=spiffe://meshway/node/" in line, line


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def last_line(text: str, needle: str) -> str | None:
    return next((line for line in reversed(text.splitlines()) if needle in line), None)
