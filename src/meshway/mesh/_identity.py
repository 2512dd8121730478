"""A data plane's mesh identity on disk: its key, its current certificate, the mesh CA.

Rules:
- The key is made here (`<prefix>/mesh/node.key`, mode 0600) and never leaves the node: only
  a CSR for it goes to the control plane. It is kept across renewals, so a worker that loads
  the new certificate file always finds the matching key.
- `node.crt` and `ca.crt` are replaced atomically (temp file + rename); connections already
  open keep the context they were made with, new ones use the new files.
- A certificate is due for renewal at 2/3 of its lifetime; an expired or unreadable one is
  treated as missing (the node then sends plain traffic until a new one arrives).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshway.pki._files import write_private
from meshway.proxy.meshhooks import spiffe_ids  # noqa: F401 (re-exported)

MESH_DIR = "mesh"


@dataclasses.dataclass(frozen=True)
class MeshCredentials:
    """Paths of a node's current mesh key, certificate and CA, with what the logs and timers need."""

    cert_path: str
    key_path: str
    ca_path: str
    spiffe_id: str
    serial: str
    not_before: float
    not_after: float

    @property
    def renew_at(self) -> float:
        """When to ask for the next certificate: 2/3 of the lifetime."""
        return self.not_before + (self.not_after - self.not_before) * 2 / 3

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class NodeIdentity:
    """Key, CSR and installed certificate of one data plane, in `<prefix>/mesh/`."""

    def __init__(self, prefix: str | Path, node_id: str) -> None:
        self.directory = Path(prefix) / MESH_DIR
        self.node_id = node_id
        self.key_path = self.directory / "node.key"
        self.cert_path = self.directory / "node.crt"
        self.ca_path = self.directory / "ca.crt"

    def _key(self) -> ec.EllipticCurvePrivateKey:
        if self.key_path.exists():
            return serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(self.key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()), 0o600)
        return key

    def csr(self) -> str:
        """A PEM CSR for the node key (created on first use)."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.node_id)])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(self._key(), hashes.SHA256())
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def install(self, cert_pem: str, ca_pem: str) -> MeshCredentials:
        """Check the certificate is for our key and chains to the CA, then write both."""
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        _issued_by_one_of(cert, x509.load_pem_x509_certificates(ca_pem.encode()))
        if _spki(cert.public_key()) != _spki(self._key().public_key()):
            raise ValueError("the certificate is not for this node's key")
        write_private(self.ca_path, ca_pem.encode(), 0o644)
        write_private(self.cert_path, cert_pem.encode(), 0o644)
        return self._credentials(cert)

    def load(self) -> MeshCredentials | None:
        """The installed credentials if present and not expired, else None."""
        try:
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            if not (self.ca_path.exists() and self.key_path.exists()):
                return None
        except (OSError, ValueError):
            return None
        creds = self._credentials(cert)
        return creds if creds.not_after > dt.datetime.now(dt.timezone.utc).timestamp() else None

    def _credentials(self, cert: x509.Certificate) -> MeshCredentials:
        ids = spiffe_ids(cert)
        return MeshCredentials(
            cert_path=str(self.cert_path), key_path=str(self.key_path), ca_path=str(self.ca_path),
            spiffe_id=ids[0] if ids else "", serial=format(cert.serial_number, "x"),
            not_before=cert.not_valid_before_utc.timestamp(), not_after=cert.not_valid_after_utc.timestamp(),
        )


def _issued_by_one_of(cert: x509.Certificate, cas: list[x509.Certificate]) -> None:
    """`ca_pem` may be a bundle (a mesh's CAs while one rotates): one of them must have issued it."""
    problem: Exception | str = "bad signature"
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            return
        except (InvalidSignature, TypeError, ValueError) as e:
            problem = e or problem
    raise ValueError(f"the certificate is not issued by the mesh CA it came with ({problem})")


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
