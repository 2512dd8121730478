"""Mesh mTLS and MeshTrafficPermission with real `meshway dp run` data planes on loopback: Kuma's
SANs on the certificates (openssl s_client), everything denied with mTLS on and no permission
(HTTP 403, TCP closed), an allow-all taking effect within a second, a specific deny beating a
broader allow, AllowWithShadowDeny logging, and mTLS off meaning no permissions at all."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers.node import MESHWAY, clean_env, free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import Cp, Dp, dps, wait_until  # noqa: F401

WEB = """\
type: Dataplane
mesh: default
name: web
networking:
  address: 127.0.0.1
  inbound:
  - port: {{ port }}
    servicePort: {{ app_port }}
    tags:
      kuma.io/service: web
      kuma.io/protocol: http
      version: v1
  - port: {{ echo_port }}
    servicePort: {{ echo_app }}
    tags:
      kuma.io/service: echo
      kuma.io/protocol: tcp
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
  - port: {{ web_out }}
    tags:
      kuma.io/service: web
  - port: {{ echo_out }}
    tags:
      kuma.io/service: echo
"""
MTLS_ON = """\
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
"""
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
DENY_CLIENT_TO_WEB = """\
type: MeshTrafficPermission
name: z-deny-client
mesh: default
spec:
  targetRef:
    kind: MeshService
    name: web
  from:
  - targetRef:
      kind: MeshService
      name: client
    default:
      action: {{ action }}
"""


def apply(cp: Cp, tmp: Path, text: str, *variables: str) -> None:
    path = tmp / "resource.yaml"
    path.write_text(text)
    args = ["apply", "-f", str(path)]
    for v in variables:
        args += ["-v", v]
    done = cp.cli(*args)
    assert done.returncode == 0, done.stderr


def http_status(port: int, timeout: float = 3) -> int | str:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/hello.txt", timeout=timeout)
    except httpx.HTTPError as e:
        return type(e).__name__
    return r.status_code if r.status_code != 403 else f"403 {r.text}"


def echoes(port: int) -> bool:
    """A TCP client through the outbound: True when the echo service answered our line. It reads
    until the line or the connection's end (a refused call is closed at once), for up to 10 s: a
    fixed wait (ncat's stdin held open 0.7 s) was too short for two sidecars and a forked `cat`
    on a loaded machine."""
    deadline, got = time.monotonic() + 10, b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"ping\n")
            while not got.endswith(b"\n") and time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                piece = sock.recv(100)
                if not piece:
                    break
                got += piece
    except OSError:
        return False
    return got == b"ping\n"


def start_echo(port: int) -> subprocess.Popen:
    return subprocess.Popen(["ncat", "-lk", "127.0.0.1", str(port), "--exec", "/bin/cat"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def mesh_get(client: Dp, port: int) -> str:
    """GET / straight to a data plane's inbound over the mesh hop (openssl s_client with the client
    data plane's certificate): what the receiving side decides, whatever the sender would do."""
    mesh_dir = client.work / "mesh"
    done = subprocess.run(
        ["openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{port}", "-servername", "sidecar.mesh.meshway",
         "-alpn", "meshway-mesh/1", "-cert", str(mesh_dir / "node.crt"), "-key", str(mesh_dir / "node.key")],
        input=b"GET /hello.txt HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n", capture_output=True,
        timeout=20)
    return done.stdout.decode(errors="replace")


UNREACHABLE = "403 service web is not reachable from this data plane"


def peer_certificate(cp_dp: Dp, port: int) -> str:
    """web's inbound certificate as `openssl x509 -text` prints it, fetched with openssl s_client
    presenting the client data plane's own mesh certificate (the mesh hop's SNI and ALPN)."""
    mesh_dir = cp_dp.work / "mesh"
    shown = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "sidecar.mesh.meshway",
         "-alpn", "meshway-mesh/1", "-cert", str(mesh_dir / "node.crt"), "-key", str(mesh_dir / "node.key"),
         "-CAfile", str(mesh_dir / "ca.crt"), "-verify_return_error"],
        input=b"", capture_output=True, timeout=20)
    assert b"Verify return code: 0 (ok)" in shown.stdout, shown.stdout[-2000:]
    pem = shown.stdout[shown.stdout.index(b"-----BEGIN CERTIFICATE-----"):shown.stdout.index(b"-----END CERTIFICATE-----") + 25]
    return subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem, capture_output=True, timeout=10).stdout.decode()


def test_permissions_between_two_data_planes(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    web_port, app_port, echo_port, echo_app = free_port(), free_port(), free_port(), free_port()
    web_out, echo_out = free_port(), free_port()
    (tmp_path / "hello.txt").write_text("hello from web\n")
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    echo = start_echo(echo_app)
    try:
        web = Dp(cp, tmp_path, "web", WEB, f"port={web_port}", f"app_port={app_port}", f"echo_port={echo_port}",
                 f"echo_app={echo_app}", app=app)
        dps.append(web)
        client = Dp(cp, tmp_path, "client", CLIENT, f"web_out={web_out}", f"echo_out={echo_out}")
        dps.append(client)
        wait_until(lambda: web.ready() and client.ready(), what="both ready")
        # mTLS off (the default mesh): permissions do not apply, everything is allowed (as Kuma)
        wait_until(lambda: http_status(web_out) == 200, what="web through the mesh")
        assert echoes(echo_out)
        said = explain(cp, "client", "web", 0)
        assert "mTLS: off" in said and "ALLOWED (mTLS off)" in said

        # Kuma's SANs on the data plane certificate, issued by the mesh CA, short-lived
        text = peer_certificate(client, web_port)
        for san in ("URI:spiffe://default/web", "URI:spiffe://default/echo", "URI:kuma://version/v1",
                    "URI:kuma://kuma.io/protocol/http"):
            assert san in text, text
        assert "Issuer: CN = meshway mesh CA" in text

        # mTLS on, no permission: the caller's data plane does not even get web and echo (reachable
        # services derived from the permissions): HTTP gets a 403 saying so, TCP is closed, both logged
        apply(cp, tmp_path, MTLS_ON)
        wait_until(lambda: str(http_status(web_out)).startswith(UNREACHABLE), timeout=10, what="unreachable")
        assert not echoes(echo_out)
        wait_until(lambda: "close=mesh_unreachable" in _logs(client), what="unreachable logged")
        # ... and web's data plane denies a mesh client no permission allows: 403, Envoy's RBAC body
        wait_until(lambda: "RBAC: access denied" in mesh_get(client, web_port), timeout=10, what="inbound deny")
        assert mesh_get(client, web_port).startswith("HTTP/1.1 403 Forbidden")
        wait_until(lambda: "close=mesh_denied" in (web.work / "logs" / "access.log").read_text(), what="deny logged")
        said = explain(cp, "client", f"127.0.0.1:{web_port}", 3)
        assert "mTLS: on, backend ca-1 (builtin), mode STRICT" in said
        assert "REFUSED by the source's data plane: service web is not among its reachable services" in said

        # an allow-all applied under traffic takes effect within a second
        apply(cp, tmp_path, ALLOW_ALL)
        applied = time.monotonic()  # the control plane has it (the CLI's own start is not counted)
        while http_status(web_out) != 200:
            assert time.monotonic() - applied < 1.0, "the allow-all did not take effect within a second"
            time.sleep(0.02)
        assert echoes(echo_out)

        assert "hello from web" in mesh_get(client, web_port)
        said = explain(cp, "client", "web", 0)
        assert "ALLOWED: MeshTrafficPermission allow-all from[0]: Allow" in said
        assert "identity spiffe://default/client" in said and "certificate issued by the mesh CA of backend ca-1" in said

        # a specific deny (client -> web) beats the broader allow; echo stays allowed
        apply(cp, tmp_path, DENY_CLIENT_TO_WEB, "action=Deny")
        wait_until(lambda: str(http_status(web_out)).startswith(UNREACHABLE), timeout=10, what="specific deny")
        wait_until(lambda: "RBAC: access denied" in mesh_get(client, web_port), timeout=10, what="inbound deny")
        assert echoes(echo_out)
        assert "REFUSED by the source's data plane" in explain(cp, "client", "web", 3)
        assert "ALLOWED: MeshTrafficPermission allow-all" in explain(cp, "client", "echo", 0)
        shown = cp.cli("inspect", "dataplane", "web", "--type", "policies")
        assert shown.returncode == 0, shown.stderr
        assert "Deny                 from kuma.io/service=client  (z-deny-client from[0])" in shown.stdout, shown.stdout
        # kumactl's table first: Kind, Origins (the policies' KRIs, zone from GET /zones)
        zone = httpx.get(f"{cp.node.admin}/zones").json()["items"][0]["name"]
        assert shown.stdout.splitlines()[:2] == [
            "Kind                    Origins",
            f"MeshTrafficPermission   kri_mtp_default_{zone}__allow-all_,kri_mtp_default_{zone}__z-deny-client_"]
        listed = json.loads(cp.cli("inspect", "dataplane", "web", "--type", "policies", "-o", "json").stdout)
        inbound = listed["policies"][0]["conf"]["inbounds"][f"127.0.0.1:{web_port}"]
        assert inbound[0] == {"from": {"kuma.io/service": "client"}, "action": "Deny",
                              "origin": f"kri_mtp_default_{zone}__z-deny-client_", "fromIndex": 0}
        # Kuma's Admin API path kumactl reads it from gives the same
        assert httpx.get(f"{cp.node.admin}/meshes/default/dataplanes/web/_policies").json() == listed
        missing = httpx.get(f"{cp.node.admin}/meshes/default/dataplanes/nobody/_policies")
        assert missing.status_code == 404 and "Dataplane nobody in mesh default not found" in missing.text
        assert httpx.get(f"{cp.node.admin}/meshes/nomesh/dataplanes/web/_policies").status_code == 404
        config = cp.cli("inspect", "dataplane", "client", "--type", "config")
        assert config.returncode == 0 and '"unreachable"' in config.stdout, config.stderr

        # AllowWithShadowDeny: allowed, and the data plane logs what would have been denied
        apply(cp, tmp_path, DENY_CLIENT_TO_WEB, "action=AllowWithShadowDeny")
        wait_until(lambda: http_status(web_out) == 200, timeout=10, what="shadow deny allows")
        wait_until(lambda: "mesh shadow deny (allowed)" in _logs(web), what="shadow deny logged")

        # removing the permissions: denied again; mTLS off again: allowed with no permission
        for name in ("allow-all", "z-deny-client"):
            assert httpx.delete(f"{cp.node.admin}/meshes/default/meshtrafficpermissions/{name}").status_code == 200
        wait_until(lambda: str(http_status(web_out)).startswith(UNREACHABLE), timeout=10, what="denied again")
        apply(cp, tmp_path, "type: Mesh\nname: default\n")
        wait_until(lambda: http_status(web_out) == 200, timeout=10, what="mTLS off: allowed")
        assert echoes(echo_out)
    finally:
        echo.kill()
        echo.wait()


def explain(cp: Cp, source: str, destination: str, code: int) -> str:
    done = cp.cli("explain", source, destination)
    assert done.returncode == code, (done.stdout, done.stderr)
    return done.stdout


def _logs(dp: Dp) -> str:
    logs = dp.work / "logs"
    return dp.output() + "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))


def test_listing_and_refusing_permissions(node_factory, tmp_path):
    cp = Cp(node_factory)
    apply(cp, tmp_path, ALLOW_ALL)
    listed = httpx.get(f"{cp.node.admin}/meshes/default/meshtrafficpermissions").json()
    assert [p["name"] for p in listed["items"]] == ["allow-all"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(ALLOW_ALL.replace("action: Allow", "action: Permit"))
    done = cp.cli("apply", "-f", str(bad))
    assert done.returncode != 0 and "spec.from[0].default.action" in done.stderr, done.stderr
    assert [p["name"] for p in httpx.get(f"{cp.node.admin}/meshes/default/meshtrafficpermissions").json()["items"]] \
        == ["allow-all"]


def mesh_yaml(mode: str, *backends: str, enabled: str = "ca-1") -> str:
    text = f"type: Mesh\nname: default\nmtls:\n  enabledBackend: {enabled}\n  backends:\n"
    return text + "".join(b.replace("{mode}", mode) for b in backends)


BUILTIN = """\
  - name: ca-1
    type: builtin
    mode: {mode}
    dpCert:
      rotation:
        expiration: 2h
    conf:
      caCert:
        RSAbits: 2048
        expiration: 1y
"""
PROVIDED = """\
  - name: ca-2
    type: provided
    mode: {mode}
    conf:
      cert:
        file: {cert}
      key:
        file: {key}
"""


class Load:
    """Requests through the client's outbound, one new connection each, until stopped (bounded)."""

    def __init__(self, port: int) -> None:
        import threading

        self.port, self.ok, self.failures = port, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for _ in range(20000):
            if self._stop.is_set():
                return
            # a slow answer (a loaded machine, a new mesh handshake) is not a lost request
            status = http_status(self.port, timeout=15)
            if status == 200:
                self.ok += 1
            else:
                self.failures.append(status)
            time.sleep(0.01)

    def stop(self) -> tuple[int, list]:
        self._stop.set()
        self._thread.join(30)
        return self.ok, self.failures


def issuer_and_validity(client: Dp, port: int) -> tuple[str, float]:
    text = peer_certificate(client, port)
    issuer = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("Issuer:"))
    stamps = [line.split(":", 1)[1].strip() for line in text.splitlines() if "Not Before" in line or "Not After" in line]
    before, after = (time.mktime(time.strptime(s.replace(" GMT", ""), "%b %d %H:%M:%S %Y")) for s in stamps)
    return issuer, after - before


def served_issuer(client: Dp, port: int) -> str:
    """The issuer of web's certificate, or "" while the client's CA file on disk and web's certificate
    are mid-change (each data plane writes its files when it applies its own update; under load the two
    moments can be a second apart): a wait polls until both agree. Traffic is checked by the load."""
    try:
        return issuer_and_validity(client, port)[0]
    except AssertionError:
        return ""


def test_switching_mtls_on_and_rotating_the_ca_under_load_loses_no_request(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    web_port, app_port, echo_port, echo_app = free_port(), free_port(), free_port(), free_port()
    web_out, echo_out = free_port(), free_port()
    (tmp_path / "hello.txt").write_text("hello from web\n")
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    apply(cp, tmp_path, ALLOW_ALL)  # permissions only apply once mTLS is on; this one lets everything through
    web = Dp(cp, tmp_path, "web", WEB, f"port={web_port}", f"app_port={app_port}", f"echo_port={echo_port}",
             f"echo_app={echo_app}", app=app)
    dps.append(web)
    client = Dp(cp, tmp_path, "client", CLIENT, f"web_out={web_out}", f"echo_out={echo_out}")
    dps.append(client)
    wait_until(lambda: web.ready() and client.ready(), what="both ready")
    wait_until(lambda: http_status(web_out) == 200, what="web through the mesh")
    assert issuer_and_validity(client, web_port)[0] == "CN = meshway mesh CA"  # mTLS off: the node CA

    load = Load(web_out)
    # off -> PERMISSIVE -> STRICT with the builtin CA: certificates from the mesh's own CA
    apply(cp, tmp_path, mesh_yaml("PERMISSIVE", BUILTIN))
    wait_until(lambda: "default mesh CA ca-1" in served_issuer(client, web_port), what="builtin CA cert")
    apply(cp, tmp_path, mesh_yaml("STRICT", BUILTIN))
    time.sleep(2)
    wait_until(lambda: served_issuer(client, web_port) != "", what="web's certificate verified after STRICT")
    issuer, lifetime = issuer_and_validity(client, web_port)
    assert issuer == "O = meshway, CN = default mesh CA ca-1"
    assert 2 * 3600 <= lifetime <= 2 * 3600 + 600  # dpCert.rotation.expiration: 2h (plus clock-skew margin)

    # rotation to a CA the user provides as files: both trusted while the data planes switch
    ca_key, ca_crt = tmp_path / "ca2.key", tmp_path / "ca2.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
                    str(ca_crt), "-days", "30", "-subj", "/CN=provided CA two", "-addext",
                    "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True, timeout=60)
    provided = PROVIDED.replace("{cert}", str(ca_crt)).replace("{key}", str(ca_key))
    apply(cp, tmp_path, mesh_yaml("STRICT", BUILTIN, provided, enabled="ca-2"))
    wait_until(lambda: served_issuer(client, web_port) == "CN = provided CA two", what="provided CA cert")
    apply(cp, tmp_path, mesh_yaml("STRICT", provided, enabled="ca-2"))  # the old CA leaves the trust
    time.sleep(2)
    ok, failures = load.stop()
    assert failures == [] and ok > 50, (ok, failures[:10])
    assert http_status(web_out) == 200


class MeshConnection:
    """One kept-alive mesh hop to a data plane's inbound, with the client data plane's certificate
    (what a calling sidecar holds open between requests)."""

    def __init__(self, client: Dp, port: int) -> None:
        import socket
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.load_cert_chain(client.work / "mesh" / "node.crt", client.work / "mesh" / "node.key")
        ctx.set_alpn_protocols(["meshway-mesh/1"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="sidecar.mesh.meshway")
        self.buf = b""

    def get(self) -> tuple[int, bytes, bool]:
        """GET /hello.txt on this connection: (status, body, whether the server closes it)."""
        self.sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: web\r\n\r\n")
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._read()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        fields = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        size = int(fields["content-length"])
        while len(self.buf) < size:
            self.buf += self._read()
        body, self.buf = self.buf[:size], self.buf[size:]
        return int(lines[0].split()[1]), body, fields.get("connection", "").lower() == "close"

    def _read(self) -> bytes:
        data = self.sock.recv(65536)
        assert data, "the connection closed before a whole response"
        return data

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True


def test_a_permission_removed_denies_the_next_request_on_a_kept_alive_connection(node_factory, tmp_path, dps):
    """Kuma's data plane applies a changed MeshTrafficPermission to connections already open: a
    sidecar holding a kept-alive mesh connection gets RBAC's 403 on its next request and the
    connection closes; while still allowed, a config change leaves the connection serving."""
    cp = Cp(node_factory)
    web_port, app_port, echo_port, echo_app = free_port(), free_port(), free_port(), free_port()
    (tmp_path / "hello.txt").write_text("hello from web\n")
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    web = Dp(cp, tmp_path, "web", WEB, f"port={web_port}", f"app_port={app_port}", f"echo_port={echo_port}",
             f"echo_app={echo_app}", app=app)
    dps.append(web)
    client = Dp(cp, tmp_path, "client", CLIENT, f"web_out={free_port()}", f"echo_out={free_port()}")
    dps.append(client)
    wait_until(lambda: web.ready() and client.ready(), what="both ready")
    apply(cp, tmp_path, MTLS_ON)
    apply(cp, tmp_path, ALLOW_ALL)
    wait_until(lambda: "hello from web" in mesh_get(client, web_port), timeout=15, what="allowed over mTLS")

    held = MeshConnection(client, web_port)
    assert held.get() == (200, b"hello from web\n", False)
    # a change that still allows the peer (a shadow deny) leaves the kept-alive connection serving
    apply(cp, tmp_path, DENY_CLIENT_TO_WEB, "action=AllowWithShadowDeny")
    wait_until(lambda: "hello from web" in mesh_get(client, web_port) and "mesh shadow deny (allowed)" in _logs(web),
               timeout=15, what="shadow deny applied")
    assert held.get() == (200, b"hello from web\n", False)

    apply(cp, tmp_path, DENY_CLIENT_TO_WEB, "action=Deny")
    wait_until(lambda: "RBAC: access denied" in mesh_get(client, web_port), timeout=15, what="new connections denied")
    status, body, closing = held.get()
    assert (status, body, closing) == (403, b"RBAC: access denied", True)
    assert held.closed_by_server()
    wait_until(lambda: "mesh denied client=127.0.0.1 on a kept-alive connection after a config change" in _logs(web),
               what="deny logged")
