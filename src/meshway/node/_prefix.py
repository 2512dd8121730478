"""The prefix directory of a node: pid file, logs, generated certificates, cached config."""
from __future__ import annotations

import datetime
import os
from pathlib import Path

from meshway.settings import Settings

PID_FILE = "pids/meshway.pid"


class PrefixError(RuntimeError):
    """The prefix cannot be used (not writable, already running...)."""


def prepare(settings: Settings) -> Path:
    prefix = settings.prefix_path
    try:
        for sub in ("", "logs", "pids", "ssl"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrefixError(f"cannot create prefix directory {prefix}: {e.strerror}") from None
    return prefix


def pid_path(prefix: Path) -> Path:
    return prefix / PID_FILE


def running_pid(prefix: Path) -> int | None:
    """The pid of the master running in this prefix, if it is alive."""
    try:
        pid = int(pid_path(prefix).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def write_pid(prefix: Path) -> None:
    tmp = pid_path(prefix).with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(pid_path(prefix))


def remove_pid(prefix: Path) -> None:
    try:
        if running_pid(prefix) in (os.getpid(), None):
            pid_path(prefix).unlink()
    except FileNotFoundError:
        pass


def self_signed(common_name: str, days: int = 3650) -> tuple[bytes, bytes]:
    """A self-signed ECDSA certificate and key (PEM) for default listeners."""
    # Imported here: `meshway start` (the CLI) imports this module and never makes certificates.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def default_certificate(prefix: Path, name: str = "default") -> tuple[Path, Path]:
    """Generate `ssl/<name>.crt|key` once; later starts reuse them."""
    crt, key = prefix / "ssl" / f"{name}.crt", prefix / "ssl" / f"{name}.key"
    if not (crt.exists() and key.exists()):
        cert_pem, key_pem = self_signed(f"meshway-{name}")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        crt.write_bytes(cert_pem)
    return crt, key

