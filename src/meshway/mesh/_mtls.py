"""Mutual TLS per mesh: the CAs of a Mesh's `mtls.backends`, kept as Kuma's secrets, and the
certificates they issue to `meshway dp run` data planes.

Rules (Kuma `app/_src/policies/mutual-tls.md`, `pkg/core/ca/`):
- `mtls.enabledBackend` empty: mTLS is off for the mesh (data planes keep the control plane's
  node certificates; permissions do not apply). Set: data plane certificates of that mesh are
  issued by the enabled backend's CA, for `dpCert.rotation.expiration` (default 1d), with the
  SANs `spiffe://<mesh>/<service>` and `kuma://<tag>/<value>` (see `_permissions.kuma_uris`).
- `builtin`: a self-signed RSA CA (`conf.caCert.RSAbits`, default 2048; `conf.caCert.expiration`,
  default 10y) created when the Mesh is first stored with that backend, kept as the secrets
  `{mesh}.ca-builtin-cert-{backend}` and `{mesh}.ca-builtin-key-{backend}` (Kuma's names).
- `provided`: the user's CA, `conf.cert` and `conf.key` as `{file: path}` or `{inlineString: pem}`,
  read when the Mesh is applied and kept as `{mesh}.ca-provided-cert-{backend}` / `-key-`.
- Trust: every backend declared on the mesh is trusted (plus the control plane's node CA), so a
  CA rotates without a refused connection: add the new backend, switch `enabledBackend`, then
  remove the old one. The trust reaches data planes with the configuration; a data plane asks
  for a new certificate shortly after it sees its mesh's enabled backend change.
"""
from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any, Callable

CERT, KEY = "cert", "key"
DEFAULT_RSA_BITS = 2048
DEFAULT_CA_EXPIRATION = "10y"
DEFAULT_DP_EXPIRATION = "1d"
TYPES = ("builtin", "provided")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|y|d|h|m|s)")
_UNITS = {"y": 365 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def seconds(text: Any) -> float:
    """Kuma's durations (`1d`, `10y`, `24h`, `1h30m`, `90s`) in seconds; ValueError if not one."""
    text = str(text).strip()
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration (such as 1d, 24h, 10y, 1h30m)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def secret_name(mesh: str, backend: dict, part: str) -> str:
    return f"{mesh}.ca-{backend.get('type') or 'builtin'}-{part}-{backend['name']}"


def _conf(backend: dict) -> dict:
    return backend.get("conf") or {}


def backend_causes(mtls: dict) -> list[tuple[str, str]]:
    """Kuma's checks of `mtls.backends[]` beyond the shape (field names in Kuma's notation)."""
    causes = []
    for i, backend in enumerate(mtls.get("backends") or ()):
        path, conf = f"mtls.backends[{i}]", _conf(backend)
        if backend.get("type", "builtin") not in TYPES:
            causes.append((f"{path}.type", f"must be one of {', '.join(TYPES)}"))
            continue
        rotation = ((backend.get("dpCert") or {}).get("rotation") or {}).get("expiration")
        _duration_cause(f"{path}.dpCert.rotation.expiration", rotation, causes)
        if backend.get("type", "builtin") == "builtin":
            ca = conf.get("caCert") or {}
            bits = ca.get("RSAbits", DEFAULT_RSA_BITS)
            if not isinstance(bits, int) or bits not in (2048, 3072, 4096):
                causes.append((f"{path}.conf.caCert.RSAbits", "must be 2048, 3072 or 4096"))
            _duration_cause(f"{path}.conf.caCert.expiration", ca.get("expiration"), causes)
        else:
            for part in (CERT, KEY):
                try:
                    _provided_pem(conf, part)
                except ValueError as e:
                    causes.append((f"{path}.conf.{part}", str(e)))
    return causes


def _duration_cause(path: str, value: Any, causes: list) -> None:
    if value is None:
        return
    try:
        if seconds(value) <= 0:
            causes.append((path, "must be positive"))
    except ValueError as e:
        causes.append((path, str(e)))


def _provided_pem(conf: dict, part: str) -> bytes:
    source = conf.get(part)
    if not isinstance(source, dict) or not (source.get("file") or source.get("inlineString") or source.get("inline")):
        raise ValueError("needs file or inlineString")
    if source.get("file"):
        try:
            with open(source["file"], "rb") as f:
                data = f.read()
        except OSError as e:
            raise ValueError(f"cannot read {source['file']}: {e.strerror}") from None
    elif source.get("inlineString"):
        data = source["inlineString"].encode()
    else:
        data = base64.b64decode(source["inline"])
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        if part == CERT:
            x509.load_pem_x509_certificate(data)
        else:
            serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"is not a PEM {'certificate' if part == CERT else 'private key'} ({e})") from None
    return data


def _builtin_ca(mesh: str, backend: dict) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    ca = _conf(backend).get("caCert") or {}
    key = rsa.generate_private_key(public_exponent=65537, key_size=ca.get("RSAbits", DEFAULT_RSA_BITS))
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshway"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{mesh} mesh CA {backend['name']}")])
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(seconds=seconds(ca.get("expiration") or DEFAULT_CA_EXPIRATION)))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _secret(mesh: str, name: str, data: bytes) -> dict:
    return {"type": "Secret", "mesh": mesh, "name": name, "data": base64.b64encode(data).decode()}


def new_secrets(mesh_resource: dict, existing: set[str]) -> list[dict]:
    """The CA secrets a stored Mesh needs that are not in `existing` (secret names): a builtin
    backend's CA is made once; a provided backend's files are (re-)read on every apply."""
    mesh, out = mesh_resource["name"], []
    for backend in (mesh_resource.get("mtls") or {}).get("backends") or ():
        cert_name, key_name = secret_name(mesh, backend, CERT), secret_name(mesh, backend, KEY)
        if backend.get("type", "builtin") == "provided":
            conf = _conf(backend)
            out += [_secret(mesh, cert_name, _provided_pem(conf, CERT)), _secret(mesh, key_name, _provided_pem(conf, KEY))]
        elif cert_name not in existing or key_name not in existing:
            cert, key = _builtin_ca(mesh, backend)
            out += [_secret(mesh, cert_name, cert), _secret(mesh, key_name, key)]
    return out


def trust_bundles(meshes: list[dict], secrets: dict[tuple[str, str], dict]) -> dict[str, list[str]]:
    """mesh -> PEM certificates of its declared backends' CAs (enabled first): public data,
    pushed to data planes with their configuration."""
    out = {}
    for mesh_resource in meshes:
        mtls = mesh_resource.get("mtls") or {}
        if not mtls.get("enabledBackend"):
            continue
        mesh = mesh_resource["name"]
        backends = sorted(mtls.get("backends") or (), key=lambda b: b["name"] != mtls["enabledBackend"])
        pems = [base64.b64decode(secrets[(mesh, secret_name(mesh, b, CERT))]["data"]).decode()
                for b in backends if (mesh, secret_name(mesh, b, CERT)) in secrets]
        if pems:
            out[mesh] = pems
    return out


def enabled_backend(mesh_resource: dict | None) -> dict | None:
    mtls = (mesh_resource or {}).get("mtls") or {}
    enabled = mtls.get("enabledBackend")
    return next((b for b in mtls.get("backends") or () if b.get("name") == enabled), None) if enabled else None


def issuer(mesh_resource: dict, get_secret: Callable[[str, str], dict | None]):
    """(MeshCA of the enabled backend, dp certificate hours), or None when mTLS is off or its CA
    secrets are missing."""
    backend = enabled_backend(mesh_resource)
    if backend is None:
        return None
    mesh = mesh_resource["name"]
    cert, key = get_secret(mesh, secret_name(mesh, backend, CERT)), get_secret(mesh, secret_name(mesh, backend, KEY))
    if cert is None or key is None:
        return None
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from ._ca import MeshCA

    ca = MeshCA(x509.load_pem_x509_certificate(base64.b64decode(cert["data"])),
                serialization.load_pem_private_key(base64.b64decode(key["data"]), password=None))
    rotation = ((backend.get("dpCert") or {}).get("rotation") or {}).get("expiration") or DEFAULT_DP_EXPIRATION
    return ca, seconds(rotation) / 3600


def fingerprint(section: dict, mesh: str) -> str | None:
    """What a data plane's certificate depends on: the mesh's enabled backend (None: mTLS off)."""
    spec = next((m for m in section.get("meshes") or () if m.get("name") == mesh), None)
    backend = enabled_backend(spec)
    return f"{backend['name']}:{backend.get('type', 'builtin')}" if backend else None


def dataplane_issuer(resources: Any, mesh: str, node_ca: Any, node_hours: float) -> tuple[Any, float, str]:
    """(CA, certificate hours, CA bundle to send) for a data plane of `mesh`: the enabled
    backend's CA when mTLS is on, the control plane's node CA otherwise. The bundle holds every
    CA of the mesh and the node CA, so peers on either side of a switch keep verifying."""
    mesh_resource = resources.get("Mesh", mesh, mesh)
    found = issuer(mesh_resource, lambda m, n: resources.get("Secret", m, n)) if mesh_resource else None
    if found is None:
        return node_ca, node_hours, node_ca.cert_pem
    ca, hours = found
    secrets = {}
    for backend in (mesh_resource.get("mtls") or {}).get("backends") or ():
        name = secret_name(mesh, backend, CERT)
        secret = resources.get("Secret", mesh, name)
        if secret is not None:
            secrets[(mesh, name)] = secret
    pems = trust_bundles([mesh_resource], secrets).get(mesh, [])
    return ca, hours, "".join(p if p.endswith("\n") else p + "\n" for p in [*pems, node_ca.cert_pem])
