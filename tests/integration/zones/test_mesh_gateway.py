"""`meshway connect envoy -mesh-gateway -register` on loopback: registered in its zone, routing TLS
by SNI to the zone's service instances without decrypting (the client sees the instance's own
certificate, the gateway holds no key for it), unknown names closed, deregistered on SIGTERM."""
from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import threading
import time

import httpx
import pytest

from tests.fixtures.certs import cert_pair_for_test
from tests.helpers.node import MESHWAY, NodeForTest, clean_env, free_port

DATAPLANE = """\
type: Dataplane
mesh: default
name: echo-1
networking:
  address: 127.0.0.1
  inbound:
  - port: {port}
    tags:
      kuma.io/service: echo
"""


class TlsEchoForTest:
    """A TLS server with its own certificate: answers `echo:<line>` to each line."""

    def __init__(self, tmp_path, name: str = "echo.internal.test"):
        cert, key = cert_pair_for_test(name)
        (tmp_path / "echo.crt").write_text(cert)
        (tmp_path / "echo.key").write_text(key)
        self.cert_pem = cert
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tmp_path / "echo.crt", tmp_path / "echo.key")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen_sni: list[str] = []
        self.ctx.sni_callback = lambda s, name, c: self.seen_sni.append(name) and None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn) -> None:
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                line = tls.recv(1024)
                tls.sendall(b"echo:" + line)
        except (OSError, ssl.SSLError):
            pass


def tls_call(port: int, sni: str, payload: bytes = b"hello\n") -> tuple[bytes, bytes]:
    """(answer, DER of the certificate the server presented) through the gateway."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(payload)
            return tls.recv(1024), tls.getpeercert(binary_form=True)


def wait_for(cond, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except (OSError, ssl.SSLError, httpx.HTTPError, ValueError) as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s (last error: {last})")


@pytest.fixture
def cp(tmp_path):
    node = NodeForTest(tmp_path, "cp", {"role": "control_plane", "proxy_listen": "off", "datacenter": "onprem"})
    node.start()
    yield node
    node.stop()


def start_gateway(cp, tmp_path, lan: int, wan: int, *extra: str) -> subprocess.Popen:
    log = open(tmp_path / "gateway.log", "w")
    return subprocess.Popen(
        [MESHWAY, "connect", "envoy", "-mesh-gateway", "-register", "-address", f"127.0.0.1:{lan}",
         "-wan-address", f"127.0.0.1:{wan}", "-admin-bind", f"127.0.0.1:{free_port()}",
         "-work-dir", str(tmp_path / "gw"), "-http-addr", cp.admin, *extra, "--", "-l", "debug"],
        stdout=log, stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True)


def test_gateway_registers_and_routes_by_sni_without_decrypting(cp, tmp_path):
    echo = TlsEchoForTest(tmp_path)
    dp_file = tmp_path / "echo.yaml"
    dp_file.write_text(DATAPLANE.format(port=echo.port))
    applied = subprocess.run([MESHWAY, "apply", "-f", str(dp_file), "--cp-address", cp.admin],
                             capture_output=True, text=True, env=clean_env(), timeout=60)
    assert applied.returncode == 0, applied.stderr
    lan, wan, metrics = free_port(), free_port(), free_port()
    gateway = start_gateway(cp, tmp_path, lan, wan, "-prometheus-bind", f"127.0.0.1:{metrics}")
    try:
        summary = wait_for(lambda: httpx.get(f"{cp.admin}/v1/zones/federation").json()["gateways"] or None,
                           what="the gateway registered")
        assert summary == [{"ID": "mesh-gateway", "WAN": f"127.0.0.1:{wan}"}]
        zones = subprocess.run([MESHWAY, "get", "zones", "-o", "json", "--cp-address", cp.admin],
                               capture_output=True, text=True, env=clean_env(), timeout=60)
        zone = json.loads(zones.stdout)["items"][0]
        assert (zone["name"], zone["gateways"]) == ("onprem", 1), zones.stdout

        sni = "echo.default.onprem.internal.mesh.meshway"
        for port in (lan, wan):  # both addresses are bound
            answer, der = wait_for(lambda: tls_call(port, sni), what=f"echo through the gateway on {port}")
            assert answer == b"echo:hello\n"
            # the certificate the client saw is the instance's own: the gateway passed TLS through
            assert der == ssl.PEM_cert_to_DER_cert(echo.cert_pem)
        assert echo.seen_sni[-1] == sni  # the instance got the ClientHello as the client sent it
        subset = "v1.echo.default.onprem.internal.mesh.meshway"
        assert tls_call(lan, subset)[0] == b"echo:hello\n"

        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):  # no route: closed, nothing answers
            tls_call(lan, "other.default.onprem.internal.mesh.meshway")
        assert gateway.poll() is None

        # the gateway's connection counts per SNI
        def counted() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
            return text if 'sni="other.default.onprem.internal.mesh.meshway"' in text else None

        text = wait_for(counted, what="per-SNI metrics")
        assert (f'meshway_mesh_gateway_connections_total{{sni="{sni}",route="local-default-echo",'
                'close="upstream_closed"} 2') in text, text  # one call on each address
        assert (f'meshway_mesh_gateway_connections_total{{sni="{subset}",route="local-default-echo",') in text
        assert 'sni="other.default.onprem.internal.mesh.meshway",route="-",close="no_route"} 1' in text, text
        assert f'meshway_mesh_gateway_bytes_total{{sni="{sni}",direction="down"}}' in text
        assert httpx.get(f"http://127.0.0.1:{metrics}/other").status_code == 404
    finally:
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(30) == 0
    # deregistered when it stopped
    assert httpx.get(f"{cp.admin}/v1/zones/federation").json()["gateways"] == []
    log = (tmp_path / "gateway.log").read_text()
    assert "Envoy arguments ignored: -l debug" in log and "deregistered" in log


def test_bad_addresses_and_kinds_are_refused(cp):
    run = subprocess.run([MESHWAY, "connect", "envoy", "-gateway=terminating", "-address", "127.0.0.1:1"],
                         capture_output=True, text=True, env=clean_env(), timeout=60)
    assert run.returncode == 1 and '-gateway: "terminating" is not supported' in run.stderr
    run = subprocess.run([MESHWAY, "connect", "envoy", "-mesh-gateway", "-address", "gateway.example:8443"],
                         capture_output=True, text=True, env=clean_env(), timeout=60)
    assert run.returncode == 1 and "is not an IP address" in run.stderr
    refused = httpx.put(f"{cp.admin}/v1/agent/service/register", json={"Kind": "", "Name": "web", "Port": 80})
    assert refused.status_code == 400 and "only 'mesh-gateway' services" in refused.json()["message"]
