"""Mesh identities with real keys and certificates: the CA signs CSRs, a node installs and renews."""
from __future__ import annotations

import os
import stat
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshway.mesh import CsrError, MeshCA, NodeIdentity, spiffe_ids

NODE = "6f1c2d3e-0000-4000-8000-000000000001"


def test_the_ca_is_created_once_and_its_key_is_private(tmp_path):
    ca = MeshCA.load_or_create(tmp_path / "mesh")
    assert stat.S_IMODE(os.stat(tmp_path / "mesh" / "ca.key").st_mode) == 0o600
    assert MeshCA.load_or_create(tmp_path / "mesh").cert == ca.cert


def test_a_node_certificate_names_the_session_node_not_the_csr(tmp_path):
    ca = MeshCA.load_or_create(tmp_path / "cp")
    node = NodeIdentity(tmp_path / "dp", NODE)
    cert = x509.load_pem_x509_certificate(ca.sign(node.csr(), NODE, "host-b").encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert spiffe_ids(cert) == [f"spiffe://meshway/node/{NODE}"]
    assert san.get_values_for_type(x509.DNSName) == ["host-b"]
    cert.verify_directly_issued_by(ca.cert)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 24 * 3600 <= lifetime.total_seconds() <= 24 * 3600 + 600
    assert stat.S_IMODE(os.stat(node.key_path).st_mode) == 0o600


def test_bad_csrs_are_refused(tmp_path):
    ca = MeshCA.load_or_create(tmp_path)
    with pytest.raises(CsrError, match="not a PEM"):
        ca.sign("hello", NODE, "h")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(key, hashes.SHA256()))
    from cryptography.hazmat.primitives import serialization

    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    assert ca.sign(pem, NODE, "not a hostname!")  # a bad hostname is left out, not fatal
    body = pem.splitlines()
    body[3] = body[3][:10] + ("A" if body[3][10] != "A" else "B") + body[3][11:]  # flip one base64 char
    with pytest.raises(CsrError):
        ca.sign("\n".join(body) + "\n", NODE, "h")


def test_install_checks_key_and_issuer_and_renewal_is_due_at_two_thirds(tmp_path):
    ca, other = MeshCA.load_or_create(tmp_path / "ca1"), MeshCA.load_or_create(tmp_path / "ca2")
    node = NodeIdentity(tmp_path / "dp", NODE)
    assert node.load() is None
    cert = ca.sign(node.csr(), NODE, "h", hours=3)
    with pytest.raises(ValueError):
        node.install(cert, other.cert_pem)  # not issued by that CA
    stranger = NodeIdentity(tmp_path / "other", NODE)
    with pytest.raises(ValueError, match="not for this node's key"):
        stranger.install(ca.sign(node.csr(), NODE, "h"), ca.cert_pem)
    creds = node.install(cert, ca.cert_pem)
    assert node.load() == creds and creds.spiffe_id == f"spiffe://meshway/node/{NODE}"
    assert abs(creds.renew_at - (creds.not_before + (3 * 3600 + 300) * 2 / 3)) < 2  # not_before is 5 min early
    assert creds.renew_at > time.time()


def test_an_expired_certificate_counts_as_none(tmp_path):
    import datetime as dt

    from cryptography.hazmat.primitives import serialization

    ca = MeshCA.load_or_create(tmp_path / "ca")
    node = NodeIdentity(tmp_path / "dp", NODE)
    public_key = x509.load_pem_x509_csr(node.csr().encode()).public_key()
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NODE)])
    expired = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.cert.subject).public_key(public_key)
               .serial_number(1).not_valid_before(now - dt.timedelta(hours=2))
               .not_valid_after(now - dt.timedelta(hours=1)).sign(ca.key, hashes.SHA256()))
    node.install(expired.public_bytes(serialization.Encoding.PEM).decode(), ca.cert_pem)
    assert node.cert_path.exists() and node.load() is None
