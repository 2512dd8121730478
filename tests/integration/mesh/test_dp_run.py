"""`meshway dp run` against a real control plane on loopback: registration with a token, identity,
readiness, the app's lifecycle, traffic between two data planes (outbound listeners), the DNS
proxy, deregistration on SIGTERM, and refusals that register nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.node import MESHWAY, clean_env, free_port, node_factory  # noqa: F401

WEB = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: {{ address }}
  inbound:
  - port: {{ port }}
    servicePort: {{ app_port }}
    tags:
      kuma.io/service: web
      kuma.io/protocol: http
"""
CLIENT = """\
type: Dataplane
mesh: default
name: client
networking:
  address: 127.0.0.1
  gateway:
    tags:
      kuma.io/service: client
  outbound:
  - port: {{ outbound }}
    tags:
      kuma.io/service: web
"""


def wait_until(cond, timeout: float = 60.0, what: str = "condition") -> None:
    """Until `cond()` holds (HTTP and OS errors count as not yet); the bound only ends a wait that
    failed: `dp run` processes starting on a loaded machine can take tens of seconds to be ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout} s")


class Cp:
    def __init__(self, node_factory):
        self.dp_port = free_port()
        self.node = node_factory("cp", role="control_plane", proxy_listen="off",
                                 mesh_dp_listen=f"127.0.0.1:{self.dp_port}")
        self.node.start()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([MESHWAY, *args, "--cp-address", self.node.admin], capture_output=True, text=True,
                              env=clean_env(), timeout=60)

    def token(self, tmp: Path, name: str) -> Path:
        made = self.cli("generate", "dataplane-token", "--name", name, "--mesh", "default", "--valid-for", "1h")
        assert made.returncode == 0, made.stderr
        path = tmp / f"token-{name}"
        path.write_text("  " + made.stdout.strip() + "\r\n\n")  # pasted with junk around it (kuma#4567)
        return path

    def dataplanes(self) -> dict[str, dict]:
        items = httpx.get(f"{self.node.admin}/meshes/default/dataplanes+insights").json()["items"]
        return {i["name"]: i for i in items}


class Dp:
    def __init__(self, cp: Cp, tmp: Path, name: str, template: str, *variables: str, app: list[str] = ()):
        self.ready_port, self.dns_port = free_port(), free_port()
        self.template = tmp / f"{name}.yaml"
        self.template.write_text(template)
        self.work = tmp / f"work-{name}"
        cmd = [MESHWAY, "dp", "run", f"--cp-address=https://127.0.0.1:{cp.dp_port}",
               f"--dataplane-token-file={cp.token(tmp, name)}", f"--dataplane-file={self.template}",
               "--readiness-port", str(self.ready_port), "--dns-proxy-port", str(self.dns_port),
               "--work-dir", str(self.work), "--binary-path", "/usr/local/bin/envoy"]
        for v in variables:
            cmd += ["--dataplane-var", v]
        if app:
            cmd += ["--", *app]
        self.log = open(tmp / f"{name}.log", "w+")
        # its own process group: the fixture's kill reaches the app it started too (no orphan left)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=clean_env(),
                                     start_new_session=True)

    def ready(self) -> bool:
        return httpx.get(f"http://127.0.0.1:{self.ready_port}/ready", timeout=2).status_code == 200

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            self.log.close()


@pytest.fixture
def dps():
    running: list[Dp] = []
    yield running
    for dp in running:
        try:
            os.killpg(dp.proc.pid, signal.SIGKILL)  # the data plane and the app it started
        except ProcessLookupError:
            pass
        dp.proc.wait()


def dig(port: int, name: str, *extra: str) -> str:
    return subprocess.run(["dig", "@127.0.0.1", "-p", str(port), name, "+short", "+tries=1", "+time=3", *extra],
                          capture_output=True, text=True, timeout=20).stdout.strip()


def test_two_data_planes_register_talk_resolve_and_deregister(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    web_port, app_port, outbound = free_port(), free_port(), free_port()
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    (tmp_path / "hello.txt").write_text("hello from web\n")
    web = Dp(cp, tmp_path, "web", WEB, "name=web", "address=127.0.0.1", f"port={web_port}", f"app_port={app_port}",
             app=app)
    dps.append(web)
    wait_until(web.ready, what="web ready")
    assert "--binary-path is ignored" in web.output()
    # the app was started once ready, and the data plane registered itself with its identity
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{app_port}/hello.txt").text == "hello from web\n", what="app up")
    wait_until(lambda: cp.dataplanes()["web"]["dataplaneInsight"].get("mTLS"), timeout=60, what="web certificate")  # insights land after the first report; slow when the suite runs 4 workers
    from cryptography import x509

    from meshway.mesh import spiffe_ids

    cert = x509.load_pem_x509_certificate((web.work / "mesh" / "node.crt").read_bytes())
    assert "spiffe://meshway/mesh/default/service/web" in spiffe_ids(cert)  # its identity names its service

    client = Dp(cp, tmp_path, "client", CLIENT, f"outbound={outbound}")
    dps.append(client)
    wait_until(client.ready, what="client ready")
    # the client's outbound reaches web's app through both data planes (mutual TLS between them)
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{outbound}/hello.txt", timeout=3).text == "hello from web\n",
               what="outbound to web")
    assert "mesh certificate" in web.output()
    access_log = web.work / "logs" / "access.log"
    # web's inbound is kuma.io/protocol http: its data plane terminates the client's mutual TLS and
    # serves the hop on the HTTP path (one access log line per request, the caller's identity in it)
    wait_until(lambda: '"GET /hello.txt HTTP/1.1" 200' in access_log.read_text(), what="inbound HTTP log line")
    line = next(ln for ln in access_log.read_text().splitlines() if "GET /hello.txt" in ln)
    assert "mtls=yes peer=spiffe://meshway/" in line, line

    # DNS: web.mesh has a VIP from 240.0.0.0/4, over UDP and TCP
    assert dig(client.dns_port, "web.mesh") == "240.0.0.1"
    assert dig(client.dns_port, "web.mesh", "+tcp") == "240.0.0.1"
    assert dig(client.dns_port, "WEB.mesh") == "240.0.0.1"

    def rows() -> dict[str, str]:
        return {line.split()[1]: line for line in cp.cli("inspect", "dataplanes").stdout.splitlines()[1:]}

    wait_until(lambda: "Online" in rows()["web"] and "Online" in rows()["client"], what="both Online")
    assert "builtin" in rows()["web"]  # certificate backend
    listed = json.loads(cp.cli("get", "dataplanes", "-o", "json").stdout)
    assert {d["name"] for d in listed["items"]} == {"web", "client"}

    # SIGTERM: deregistered at once, the app stopped, its exit status returned (143 = SIGTERM)
    assert web.stop() == 143
    wait_until(lambda: "web" not in cp.dataplanes(), timeout=10, what="web deregistered")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{app_port}/hello.txt", timeout=2)
    wait_until(lambda: dig(client.dns_port, "web.mesh") == "", what="web.mesh gone")  # with its last data plane
    assert client.stop() == 0


def test_the_app_exit_code_is_the_data_planes(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    port = free_port()
    dp = Dp(cp, tmp_path, "job", WEB, "name=job", "address=127.0.0.1", f"port={port}", f"app_port={free_port()}",
            app=[sys.executable, "-c", "import sys; sys.exit(3)"])
    dps.append(dp)
    assert dp.proc.wait(30) == 3
    wait_until(lambda: "job" not in cp.dataplanes(), timeout=10, what="job deregistered")


def test_a_missing_variable_names_the_field_and_registers_nothing(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    dp = Dp(cp, tmp_path, "web", WEB, "name=web", f"port={free_port()}", f"app_port={free_port()}")  # no address
    dps.append(dp)
    assert dp.proc.wait(30) == 1
    assert "networking.address: address can't be empty" in dp.output()
    assert cp.dataplanes() == {}


def test_a_token_for_another_name_or_revoked_is_refused(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    other = cp.token(tmp_path, "other")
    template = tmp_path / "web.yaml"
    template.write_text(WEB)
    base = [MESHWAY, "dp", "run", f"--cp-address=https://127.0.0.1:{cp.dp_port}", f"--dataplane-file={template}",
            "-v", "name=web,address=127.0.0.1", "-v", f"port={free_port()}", "-v", f"app_port={free_port()}",
            "--readiness-port", str(free_port()), "--dns-enabled=false"]
    wrong = subprocess.run([*base, f"--dataplane-token-file={other}", "--work-dir", str(tmp_path / "w1")],
                           capture_output=True, text=True, timeout=60, env=clean_env())
    assert wrong.returncode == 1
    assert "is for data plane 'other', not 'web'" in wrong.stderr
    token = cp.token(tmp_path, "web")
    assert cp.cli("revoke", "dataplane-token", "--token-file", str(token)).returncode == 0
    revoked = subprocess.run([*base, f"--dataplane-token-file={token}", "--work-dir", str(tmp_path / "w2")],
                             capture_output=True, text=True, timeout=60, env=clean_env())
    assert revoked.returncode == 1 and "has been revoked" in revoked.stderr
    assert cp.dataplanes() == {}
    assert not os.path.exists(tmp_path / "w2" / "mesh" / "node.crt")
