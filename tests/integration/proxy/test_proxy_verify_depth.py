"""`tls_verify_depth` on https services: a chain deeper than allowed is refused (502)."""
from __future__ import annotations

import datetime
import http.server
import ssl
import threading
import uuid

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.proxy.proxy_for_test import WorkerProcess, route_for_test, service_for_test, snapshot_for_test


def _cert(name, key, issuer_name, issuer_key, *, ca, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def chained_origin(tmp_path_factory):
    """An HTTPS origin for `localhost` whose certificate is signed by an intermediate CA."""
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("root", root_key, "root", root_key, ca=True)
    inter = _cert("intermediate", inter_key, "root", root_key, ca=True)
    leaf = _cert("localhost", leaf_key, "intermediate", inter_key, ca=False, san="localhost")
    d = tmp_path_factory.mktemp("chain")
    (d / "chain.pem").write_text(_pem(leaf) + _pem(inter))
    (d / "leaf.key").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "7")
            self.end_headers()
            self.wfile.write(b"chained")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "chain.pem", d / "leaf.key")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], _pem(root)
    server.shutdown()


@pytest.mark.parametrize("depth, status", [(None, 200), (2, 200), (1, 502)])
def test_verify_depth(chained_origin, tmp_path, depth, status):
    port, root_pem = chained_origin
    ca = {"id": str(uuid.uuid4()), "cert": root_pem, "cert_digest": None, "tags": None}
    svc = service_for_test(host="localhost", port=port, protocol="https", tls_verify=True, tls_verify_depth=depth,
                           ca_certificates=[ca["id"]], retries=0)
    snap = snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"])], ca_certificates=[ca])
    front = WorkerProcess(snap, tmp_path / "front")
    try:
        r = httpx.get(front.url + "/")
        assert r.status_code == status, r.text
        if status == 200:
            assert r.text == "chained"
    finally:
        front.stop()
