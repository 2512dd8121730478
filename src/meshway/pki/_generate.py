"""Creating cluster certificates: the shared self-signed pair and a small CA for `cluster_mtls = pki`.

Keys are ECDSA P-384 (what `kong hybrid gen_cert` makes). Every certificate carries its common
name as a DNS SAN too, so a control plane can be verified by name (`cluster_server_name`).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._files import refuse_existing, write_private

_BOTH_SIDES = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
)
_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew between nodes
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf(builder: x509.CertificateBuilder, common_name: str) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_USAGE, critical=True)
        .add_extension(_BOTH_SIDES, critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
    )


def _write_pair(cert: x509.Certificate, key, cert_path, key_path) -> None:
    write_private(key_path, _key_pem(key), 0o600)
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def gen_cluster_cert(
    cert_path: str | os.PathLike,
    key_path: str | os.PathLike,
    *,
    days: int = 1095,
    common_name: str = "meshway_clustering",
    force: bool = False,
) -> None:
    """Write a self-signed ECDSA P-384 cluster certificate and its key (mode 0600)."""
    refuse_existing(cert_path, key_path, force=force)
    key = _new_key()
    name = _name(common_name)
    builder = _leaf(_builder(name, name, key.public_key(), days), common_name)
    _write_pair(builder.sign(key, hashes.SHA384()), key, cert_path, key_path)


@dataclasses.dataclass(frozen=True)
class ClusterCA:
    """A certificate authority for `cluster_mtls = pki`: its certificate and key, in memory."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(
        cls,
        cert_path: str | os.PathLike,
        key_path: str | os.PathLike,
        *,
        common_name: str = "meshway_cluster_ca",
        days: int = 3650,
        force: bool = False,
    ) -> "ClusterCA":
        """Create a CA, write it (key 0600) and return it; `cert_path` is what `cluster_ca_cert` names."""
        refuse_existing(cert_path, key_path, force=force)
        key = _new_key()
        name = _name(common_name)
        builder = _builder(name, name, key.public_key(), days)
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        cert = builder.add_extension(_CA_USAGE, critical=True).sign(key, hashes.SHA384())
        _write_pair(cert, key, cert_path, key_path)
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: str | os.PathLike, key_path: str | os.PathLike) -> "ClusterCA":
        """Read an existing CA from PEM files."""
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        return cls(cert, key)

    def issue(
        self,
        cert_path: str | os.PathLike,
        key_path: str | os.PathLike,
        common_name: str,
        *,
        days: int = 365,
        force: bool = False,
    ) -> None:
        """Write a node certificate signed by this CA, usable by either side (CP or DP)."""
        refuse_existing(cert_path, key_path, force=force)
        key = _new_key()
        builder = _leaf(_builder(_name(common_name), self.cert.subject, key.public_key(), days), common_name)
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        cert = builder.add_extension(aki, critical=False).sign(self.key, hashes.SHA384())
        _write_pair(cert, key, cert_path, key_path)


def issue_cert(
    ca_cert: str | os.PathLike,
    ca_key: str | os.PathLike,
    cert_path: str | os.PathLike,
    key_path: str | os.PathLike,
    common_name: str,
    *,
    days: int = 365,
    force: bool = False,
) -> None:
    """Issue a node certificate from the CA files (backs `meshway hybrid issue-cert`)."""
    ClusterCA.load(ca_cert, ca_key).issue(cert_path, key_path, common_name, days=days, force=force)
