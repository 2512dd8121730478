"""Loading and checking the cluster certificate, key and CA named by the settings.

Every failure is a ClusterCertError whose message names the setting, the file and the fix, because
this is the first thing a user hits when following the hybrid-mode walkthrough.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pwd
import stat
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization


class ClusterCertError(ValueError):
    """The cluster certificate, key or CA cannot be used; the message says why and how to fix it."""


@dataclasses.dataclass(frozen=True)
class ClusterCredentials:
    """Checked cluster TLS material: paths for `SSLContext.load_cert_chain` plus what peers compare."""

    mode: str
    cert_path: Path
    key_path: Path
    cert_pem: bytes
    fingerprint: str
    not_after: dt.datetime
    ca_path: Path | None = None
    ca_pem: bytes | None = None
    server_name: str = ""

    @property
    def pair(self) -> tuple[str, str]:
        """(certfile, keyfile) as `ssl.SSLContext.load_cert_chain` takes them."""
        return str(self.cert_path), str(self.key_path)


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, lowercase hex: how shared-mode peers are compared."""
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    return h.finalize().hex()


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _permission_message(setting: str, path: Path) -> str:
    uid = os.geteuid()
    who = f"user {_user(uid)!r} (uid {uid})"
    try:
        st = path.stat()
    except PermissionError:
        return (f"{setting}: cannot read {path} as {who}: permission denied on a parent directory; "
                f"make the directories searchable, e.g. `chmod o+x {path.parent}`")
    mode = stat.S_IMODE(st.st_mode)
    facts = f"owner {_user(st.st_uid)!r}, mode {mode:04o}"
    if st.st_uid == uid:
        fix = f"`chmod 600 {path}`"
    else:
        fix = f"`chmod 644 {path}` or `chown {_user(uid)} {path}` then `chmod 600 {path}`"
    return f"{setting}: cannot read {path} as {who}: permission denied ({facts}); fix with {fix}"


def _read(setting: str, value: str, prefix: Path) -> tuple[Path, bytes]:
    if not value:
        raise ClusterCertError(f"{setting} is not set: hybrid mode needs cluster_cert and cluster_cert_key "
                               "(create a pair with `meshway hybrid gen-cert`)")
    path = Path(value) if Path(value).is_absolute() else prefix / value
    try:
        return path, path.read_bytes()
    except FileNotFoundError:
        raise ClusterCertError(f"{setting}: file {path} not found") from None
    except PermissionError:
        raise ClusterCertError(_permission_message(setting, path)) from None
    except IsADirectoryError:
        raise ClusterCertError(f"{setting}: {path} is a directory, expected a PEM file") from None
    except OSError as e:
        raise ClusterCertError(f"{setting}: cannot read {path}: {e.strerror}") from None


def _parse_cert(setting: str, path: Path, data: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ClusterCertError(f"{setting}: {path} is not a PEM certificate "
                               "(expected a '-----BEGIN CERTIFICATE-----' block)") from None


def _parse_key(setting: str, path: Path, data: bytes) -> Any:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ClusterCertError(f"{setting}: {path} is encrypted; meshway needs an unencrypted key "
                               f"(`openssl pkey -in {path} -out {path}.plain`)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ClusterCertError(f"{setting}: {path} is not a PEM private key "
                               "(expected a '-----BEGIN ... PRIVATE KEY-----' block)") from None


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_match(cert: x509.Certificate, key: Any, cert_path: Path, key_path: Path) -> None:
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise ClusterCertError(f"cluster_cert {cert_path} and cluster_cert_key {key_path} do not match "
                               "(the key is not the certificate's private key)")


def _check_validity(cert: x509.Certificate, path: Path) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    if cert.not_valid_after_utc < now:
        raise ClusterCertError(f"cluster_cert: {path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")


def _check_issued_by(cert: x509.Certificate, ca: x509.Certificate, cert_path: Path, ca_path: Path) -> None:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ClusterCertError(f"cluster_mtls = pki: cluster_cert {cert_path} is not issued by "
                               f"cluster_ca_cert {ca_path}") from None


def _load_ca(settings: Any, cert: x509.Certificate, cert_path: Path) -> tuple[Path, bytes]:
    if not settings.cluster_ca_cert:
        raise ClusterCertError("cluster_mtls = pki needs cluster_ca_cert (the CA that issued the node certificates)")
    ca_path, ca_pem = _read("cluster_ca_cert", settings.cluster_ca_cert, settings.prefix_path)
    _check_issued_by(cert, _parse_cert("cluster_ca_cert", ca_path, ca_pem), cert_path, ca_path)
    return ca_path, ca_pem


def load_cluster_credentials(settings: Any) -> ClusterCredentials:
    """Read and check cluster_cert, cluster_cert_key (and cluster_ca_cert in pki mode)."""
    prefix = settings.prefix_path
    cert_path, cert_pem = _read("cluster_cert", settings.cluster_cert, prefix)
    key_path, key_pem = _read("cluster_cert_key", settings.cluster_cert_key, prefix)
    cert = _parse_cert("cluster_cert", cert_path, cert_pem)
    _check_match(cert, _parse_key("cluster_cert_key", key_path, key_pem), cert_path, key_path)
    _check_validity(cert, cert_path)
    ca_path = ca_pem = None
    if settings.cluster_mtls == "pki":
        ca_path, ca_pem = _load_ca(settings, cert, cert_path)
    return ClusterCredentials(
        mode=settings.cluster_mtls, cert_path=cert_path, key_path=key_path,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        fingerprint=fingerprint(cert.public_bytes(serialization.Encoding.DER)),
        not_after=cert.not_valid_after_utc, ca_path=ca_path, ca_pem=ca_pem,
        server_name=settings.cluster_server_name,
    )
