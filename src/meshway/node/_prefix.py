"""The prefix directory of a node: pid file, logs, generated certificates, cached config."""
from __future__ import annotations

import datetime
import os
from pathlib import Path

from meshway.settings import SCHEMA, Settings

PID_FILE = "pids/meshway.pid"
RECORDED = ".meshway_env"
# file settings a node opens after `start` returns: recorded absolute, so that `restart` from
# another directory opens the same files
_FILE_KEYS = frozenset({
    "sqlite_path", "declarative_config", "cluster_cert", "cluster_cert_key", "cluster_ca_cert",
    "lua_ssl_trusted_certificate", "ssl_cert", "ssl_cert_key", "admin_ssl_cert", "admin_ssl_cert_key",
})


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
    return None if _is_zombie(pid) else pid


def _is_zombie(pid: int) -> bool:
    """A killed master not yet reaped by its parent still answers kill(0): it runs nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].startswith(("Z", "X"))


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


DEFAULT_CERT_DAYS = 365  # generated default certificates: one year, renewed at start-up near expiry
_RENEW_BEFORE = datetime.timedelta(days=30)


def self_signed(common_name: str, days: int = DEFAULT_CERT_DAYS) -> tuple[bytes, bytes]:
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
    """Generate `ssl/<name>.crt|key` once; later starts reuse them until 30 days before they expire."""
    crt, key = prefix / "ssl" / f"{name}.crt", prefix / "ssl" / f"{name}.key"
    if not (crt.exists() and key.exists()) or _expiring(crt):
        cert_pem, key_pem = self_signed(f"meshway-{name}")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        crt.write_bytes(cert_pem)
    return crt, key



def recorded_path(prefix: Path) -> Path:
    return prefix / RECORDED


def record_settings(settings: Settings) -> Path:
    """Write every effective setting to `<prefix>/.meshway_env`, as Kong writes `.kong_env`.

    The node's master and workers read this file (and no MESHWAY_* variable), and `restart`
    starts from it: a node comes back with the settings it ran with. Only the settings given
    (by file, environment or flag) are recorded as settings: a default stays a default, for
    the role checks that tell a given listener from a default one. Mode 0600: it may hold
    `pg_password`.
    """
    prefix = prepare(settings)
    lines = ["# the settings of the node started in this prefix, written by `meshway start`;",
             "# defaults are comments, so that they stay defaults (a role ignores unset listeners)"]
    for key in SCHEMA:
        given = key == "prefix" or settings.sources.get(key, "default") != "default"
        lines.append(("" if given else "# ") + f"{key} = {recorded_value(settings, key)}")
    path = recorded_path(prefix)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def recorded_value(settings: Settings, key: str) -> str:
    value = settings.raw.get(key, "")
    if key == "prefix":
        value = str(settings.prefix_path)
    elif key in _FILE_KEYS and value:
        value = os.path.abspath(value)
    return value.replace("\n", " ").replace("#", "\\#")


def _expiring(crt: Path) -> bool:
    """The generated certificate ends within `_RENEW_BEFORE` (or cannot be read)."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
    except (OSError, ValueError):
        return True
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) < _RENEW_BEFORE
