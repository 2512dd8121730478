"""kong-streams-and-service-mesh.txt end to end, with meshway nodes, inside a network namespace.

One namespace and one cast (control plane, Kong A, Kong B, Service B) serve the module:
starting three nodes costs seconds on a shared 2-core box. Each test is one step-9 check.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshway.mesh import MeshCA
from tests.netns.conftest import NetnsForTest
from tests.netns.mesh_for_test import (
    HELLO, MESHWAY, MeshNodeForTest, configure_for_test, guide_env_for_test, eventually_for_test,
    log_line_for_test, log_mark_for_test, start_service_b_for_test, tcp_client_for_test, tproxy_rules_for_test,
)
from tests.netns.pcap_for_test import CaptureForTest

pytestmark = [pytest.mark.netns, pytest.mark.slow]
OUTSIDER = "127.0.0.9"  # a source no rule sends to Kong A: it reaches Kong B directly
MESH_CLIENT = ("--ssl-servername", "sidecar.mesh.meshway", "--ssl-alpn", "meshway-mesh/1")


class Walkthrough:
    """The running cast."""

    def __init__(self, netns: NetnsForTest, root, cp, a, b) -> None:
        self.netns, self.root, self.cp, self.a, self.b = netns, root, cp, a, b

    def spiffe(self, node: MeshNodeForTest) -> str:
        return "spiffe://meshway/node/" + (node.prefix / "node_id").read_text().strip()


def _namespace() -> NetnsForTest:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("ncat"):
        pytest.skip("needs root, iproute2 and ncat")
    ns = NetnsForTest(f"mwmesh-{secrets.token_hex(4)}")
    if subprocess.run(["ip", "netns", "add", ns.name], capture_output=True, timeout=10).returncode != 0:
        pytest.skip("cannot create a network namespace")
    ns.run("ip", "link", "set", "lo", "up")
    return ns


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    root = tmp_path_factory.mktemp("mesh")
    subprocess.run([MESHWAY, "hybrid", "gen-cert", str(root / "cluster.crt"), str(root / "cluster.key")],
                   check=True, capture_output=True)
    ns = _namespace()
    # steps 3-5 with the variables of docs/guides/service-mesh.md, read from the guide
    cp, a, b = (MeshNodeForTest(ns, root / name, guide_env_for_test(name, root)) for name in ("kong-c", "kong-a", "kong-b"))
    try:
        start_service_b_for_test(ns)  # step 1
        for node in (cp, a, b):  # steps 3-5
            node.start()
        configure_for_test(ns)  # step 6
        tproxy_rules_for_test(ns)  # step 7
        # the routes were made one by one, and a push may carry only the first ones: wait for the last
        # one (https), through both sidecars, so every test sees the whole configuration
        eventually_for_test(lambda: ns.run("curl", "-s", "--interface", "127.0.0.2", "--insecure",
                                           "https://127.0.0.5:18443", check=False).stdout.strip() == HELLO,
                            what="the whole configuration reached both sidecars")
        yield Walkthrough(ns, root, cp, a, b)
    finally:
        for node in (b, a, cp):
            node.stop()
        ns.cleanup()


def test_tcp_and_tls_reach_service_b_over_a_mutual_tls_hop(walkthrough, tmp_path):
    w = walkthrough
    marks = log_mark_for_test(w.a), log_mark_for_test(w.b)
    capture = CaptureForTest(w.netns, tmp_path / "lo.pcap")
    tcp = tcp_client_for_test(w.netns, "--source", "127.0.0.2", "127.0.0.5", "19000")
    tls = w.netns.run("ncat", "--source", "127.0.0.2", "--recv-only", "--ssl", "127.0.0.5", "19443").stdout
    segments = capture.stop()
    assert HELLO in tcp and tls == HELLO + b"\n"
    # the sidecars' logs: each side names the other by its SPIFFE id
    a_tcp = log_line_for_test(w.a, "client=127.0.0.2:", "route=service-b-tcp", "mtls=yes", after=marks[0])
    b_tcp = log_line_for_test(w.b, "client=127.0.0.3:", "route=service-b-tcp", "mode=mesh", after=marks[1])
    assert f"peer={w.spiffe(w.b)}" in a_tcp and "dst=127.0.0.5:19000" in a_tcp
    assert f"peer={w.spiffe(w.a)}" in b_tcp and "upstream=127.0.0.5:19000 upstream_tls=no" in b_tcp
    a_tls = log_line_for_test(w.a, "client=127.0.0.2:", "route=service-b-tls", "mtls=yes", "down_bytes=21",
                              after=marks[0])
    b_tls = log_line_for_test(w.b, "client=127.0.0.3:", "route=service-b-tls", "mode=mesh", "down_bytes=21",
                              after=marks[1])
    assert "mode=terminate" in a_tls and f"peer={w.spiffe(w.b)}" in a_tls
    assert "upstream_tls=yes" in b_tls and f"peer={w.spiffe(w.a)}" in b_tls  # B re-originates the service's TLS
    # the capture: the A-to-B hop starts with a TLS handshake and never carries the answer in clear
    for port in (19000, 19443):
        hop = [s for s in segments if s.between("127.0.0.3", ("127.0.0.5", port)) and s.payload]
        assert hop and hop[0].src[0] == "127.0.0.3" and hop[0].payload[:2] == b"\x16\x03"
        assert not any(HELLO in s.payload for s in hop)
    # ...while B's hop to the local service is plain tcp, and the capture did see it
    assert any(HELLO in s.payload for s in segments if s.between("127.0.0.4", ("127.0.0.5", 19000)))


def _client_pair(directory, name: str, issuer: MeshCA | None) -> tuple[str, str, str]:
    """A client key and certificate for `spiffe://meshway/node/<uuid>`: self-signed or from `issuer`."""
    node = str(uuid.uuid4())
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)])
    if issuer is not None:
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        pem = issuer.sign(csr.public_bytes(serialization.Encoding.PEM).decode(), node, name).encode()
    else:
        import datetime as dt

        now = dt.datetime.now(dt.timezone.utc)
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://meshway/node/{node}")])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(hours=1)).add_extension(san, critical=False)
                .sign(key, hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM)
    crt, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    crt.write_bytes(pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(crt), str(key_path), node


def test_a_client_certificate_from_outside_the_mesh_ca_is_refused(walkthrough, tmp_path):
    w = walkthrough
    crt, key, _ = _client_pair(tmp_path, "intruder", None)
    out = tcp_client_for_test(w.netns, "--source", "127.0.0.9", "--ssl", "--ssl-cert", crt, "--ssl-key", key,
                              *MESH_CLIENT, "127.0.0.5", "19000", timeout=3)
    assert HELLO not in out
    line = log_line_for_test(w.b, "client=127.0.0.9:", "close=mesh_refused")
    assert "dst=127.0.0.5:19000" in line and "up_bytes=0 down_bytes=0" in line
    # the same client with a certificate the control plane's mesh CA issued is let in
    crt, key, node = _client_pair(tmp_path, "member", MeshCA.load_or_create(w.cp.prefix / "mesh"))
    out = tcp_client_for_test(w.netns, "--source", "127.0.0.9", "--ssl", "--ssl-cert", crt, "--ssl-key", key,
                              *MESH_CLIENT, "127.0.0.5", "19000")
    assert HELLO in out
    assert "mode=mesh" in log_line_for_test(w.b, "client=127.0.0.9:", f"peer=spiffe://meshway/node/{node}")


def test_a_plain_client_from_outside_the_mesh_is_accepted_in_permissive_mode(walkthrough):
    w = walkthrough
    assert HELLO in tcp_client_for_test(w.netns, "--source", "127.0.0.9", "127.0.0.5", "19000")
    line = log_line_for_test(w.b, "client=127.0.0.9:", "route=service-b-tcp", "mtls=no")
    assert "mode=raw" in line and "peer=-" in line


def test_http_and_https_reach_service_b_over_a_mutual_tls_hop(walkthrough, tmp_path):
    w = walkthrough
    marks = log_mark_for_test(w.a), log_mark_for_test(w.b)
    capture = CaptureForTest(w.netns, tmp_path / "lo.pcap")
    http = w.netns.run("curl", "-s", "--interface", "127.0.0.2", "http://127.0.0.5:18000", check=False).stdout
    https = w.netns.run("curl", "-s", "--interface", "127.0.0.2", "--insecure", "https://127.0.0.5:18443",
                        check=False).stdout
    segments = capture.stop()
    assert http.strip() == HELLO and https.strip() == HELLO
    # access logs: A names B, B names A; B saw the request as plain http / https for routing
    assert log_line_for_test(w.a, '127.0.0.2 - - [', '"GET / HTTP/1.1" 200', f"mtls=yes peer={w.spiffe(w.b)}",
                             after=marks[0])
    assert log_line_for_test(w.b, '127.0.0.3 - - [', '"GET / HTTP/1.1" 200', f"mtls=yes peer={w.spiffe(w.a)}",
                             after=marks[1])
    for port in (18000, 18443):
        hop = [s for s in segments if s.between("127.0.0.3", ("127.0.0.5", port)) and s.payload]
        # TLS records only: a handshake, or application data on an mTLS connection A kept in its pool
        assert hop and hop[0].src[0] == "127.0.0.3" and hop[0].payload[:2] in (b"\x16\x03", b"\x17\x03")
        assert not any(HELLO in s.payload or b"GET /" in s.payload for s in hop)
    assert any(HELLO in s.payload for s in segments if s.between("127.0.0.4", ("127.0.0.5", 18000)))


def test_http_clients_posing_as_sidecars_are_refused(walkthrough, tmp_path):
    w = walkthrough
    # https listener: the mesh name without any client certificate
    out = w.netns.run("curl", "-s", "--interface", OUTSIDER, "--insecure", "--resolve",
                      "sidecar.mesh.meshway:18443:127.0.0.5", "https://sidecar.mesh.meshway:18443/", check=False)
    assert HELLO not in out.stdout and out.returncode != 0
    assert log_line_for_test(w.b, "mesh refused client=127.0.0.9", "not a mesh node")
    # plain http listener: a mesh ClientHello with a certificate from another CA
    crt, key, _ = _client_pair(tmp_path, "intruder", None)
    request = "GET / HTTP/1.1\r\nHost: 127.0.0.5\r\n\r\n"
    proc = w.netns.spawn("ncat", "--source", OUTSIDER, "--ssl", "--ssl-cert", crt, "--ssl-key", key, *MESH_CLIENT,
                         "127.0.0.5", "18000", stdin=subprocess.PIPE)
    out, _ = proc.communicate(request.encode(), timeout=5)
    assert HELLO not in out
    assert log_line_for_test(w.b, "mesh refused client=127.0.0.9 dst=127.0.0.5:18000", "handshake failed")
