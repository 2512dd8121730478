"""The mesh CA the control plane keeps, and how it signs a data plane's CSR.

Rules:
- The CA lives in the control plane's prefix (`mesh/ca.crt`, `mesh/ca.key` mode 0600), created
  on first start. Control planes on one database share it: it is stored there and each node
  adopts the stored one at start (`_sharedca`); control planes without a shared database must
  be given the same two files (sidecars whose certificates come from different CAs refuse each other).
- A node certificate names the node, not what the CSR claims: the SAN URI is
  `spiffe://meshway/node/<node_id>` for the node id of the cluster session (authenticated by
  the cluster certificate), plus the hostname the data plane reported as a DNS name. Only the
  CSR's public key is used, after its signature is checked (proof of possession).
- Certificates are short-lived (NODE_CERT_HOURS); data planes renew at 2/3 of the lifetime.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshway.pki._files import write_private

TRUST_DOMAIN = "meshway"
NODE_CERT_HOURS = 24
CA_DAYS = 3650
MAX_CSR = 16 * 1024
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


class CsrError(ValueError):
    """A certificate signing request cannot be signed; the message says why."""


CONTROL_PLANE_ID = f"spiffe://{TRUST_DOMAIN}/control-plane"


def service_spiffe_id(mesh: str, service: str) -> str:
    """The identity of a `kuma.io/service` in a mesh (on `meshway dp run` certificates)."""
    return f"spiffe://{TRUST_DOMAIN}/mesh/{mesh}/service/{service}"


def node_spiffe_id(node_id: str) -> str:
    """The identity of a mesh node."""
    return f"spiffe://{TRUST_DOMAIN}/node/{node_id}"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    name = _name("meshway mesh CA")
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclasses.dataclass(frozen=True)
class MeshCA:
    """The control plane's mesh CA: signs node certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @classmethod
    def load_or_create(cls, directory: str | Path) -> "MeshCA":
        """The CA in `directory` (`ca.crt`, `ca.key`), created there on first use."""
        directory = Path(directory)
        crt, key_path = directory / "ca.crt", directory / "ca.key"
        if crt.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            return cls(x509.load_pem_x509_certificate(crt.read_bytes()), key)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _ca_certificate(key)
        write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), 0o600)
        write_private(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cls(cert, key)

    def sign(self, csr_pem: str, node_id: str, hostname: str, hours: float = NODE_CERT_HOURS,
             extra_uris: tuple[str, ...] = ()) -> str:
        """A node certificate (PEM) for the CSR's key, naming `node_id` (then `extra_uris`, e.g. the
        services of a `meshway dp run` data plane); CsrError if the CSR is bad."""
        return self._issue(parse_csr(csr_pem).public_key(), node_id, [node_spiffe_id(node_id), *extra_uris],
                           hostname, hours)

    def control_plane_pair(self, directory: str | Path, days: float = 365) -> tuple[str, str]:
        """The certificate (`cp.crt`, `cp.key`) the control plane shows `meshway dp run` data
        planes: issued by this CA, named `CONTROL_PLANE_ID`, which no node certificate carries."""
        directory = Path(directory)
        crt, key_path = directory / "cp.crt", directory / "cp.key"
        if crt.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
            fresh = cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
            if fresh and cert.issuer == self.cert.subject:
                return str(crt), str(key_path)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = self._issue(key.public_key(), "meshway control plane", [CONTROL_PLANE_ID], "localhost", days * 24)
        write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), 0o600)
        write_private(crt, pem.encode(), 0o644)
        return str(crt), str(key_path)

    def _issue(self, public_key, cn: str, uris: list[str], hostname: str, hours: float) -> str:
        now = dt.datetime.now(dt.timezone.utc)
        skew = dt.timedelta(seconds=min(300.0, hours * 360))  # 5 min of clock skew, less for short lives
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in dict.fromkeys(uris)]
        if _HOSTNAME.match(hostname or ""):
            sans.append(x509.DNSName(hostname))
        cert = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - skew).not_valid_after(now + dt.timedelta(hours=hours))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def parse_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    """A CSR whose signature checks out; CsrError otherwise."""
    if not isinstance(csr_pem, str) or len(csr_pem) > MAX_CSR:
        raise CsrError("the CSR must be a PEM string of at most 16 KiB")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise CsrError("the CSR is not a PEM certificate request") from None
    try:
        valid, key = csr.is_signature_valid, csr.public_key()
    except ValueError as e:
        raise CsrError(f"the CSR cannot be read: {e}") from None
    if not valid:
        raise CsrError("the CSR's signature does not match its key")
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CsrError("the CSR's key must be an EC key")
    return csr
