"""TLS contexts compiled from the snapshot: server certificates by SNI, client contexts per service.

Rules:
- A terminating route presents the certificate whose `snis` entity names the client's SNI
  (exact first, then `*.example.com`, then `example.*`), else the node's default pair (as the
  HTTP proxy: `ssl_cert`, else `<prefix>/ssl/default.crt`), else a self-signed certificate
  generated once per process (tests, the devserver).
- A `tls://` service verifies the upstream only when `tls_verify` is true (Kong's default is
  off), against the service's `ca_certificates` or the system store; it presents
  `client_certificate` when set.
- Loading PEM text and building upstream contexts is the HTTP proxy's code (`proxy._tls`);
  stream contexts differ in offering no ALPN (the bytes inside are not necessarily HTTP).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
import os
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ... import tlspolicy
from .. import _tls as proxy_tls
from .._runtime import default_pair
from .._tls import load_pair
from ._clienthello import normalize_sni

DEFAULT_CERT_DAYS = 365  # as the HTTP listeners' generated certificate (node._prefix)


def _load_pair(ctx: ssl.SSLContext, cert: str, key: str, what: str) -> None:
    try:
        load_pair(ctx, cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ValueError(f"{what}: cannot load certificate and key: {e}") from None


def _server_context() -> ssl.SSLContext:
    return tlspolicy.context(ssl.PROTOCOL_TLS_SERVER)


def certificate_context(entity: dict) -> ssl.SSLContext:
    """A server context holding a certificate entity's pair (and its alternate pair)."""
    ctx = _server_context()
    what = f"certificate {entity.get('id')}"
    _load_pair(ctx, entity["cert"], entity["key"], what)
    if entity.get("cert_alt") and entity.get("key_alt"):
        _load_pair(ctx, entity["cert_alt"], entity["key_alt"], what + " (alt)")
    return ctx


@functools.lru_cache(maxsize=1)
def default_certificate() -> tuple[str, str]:
    """A self-signed (cert PEM, key PEM) for `localhost`, made once per process; valid one year, as the
    HTTP listeners' generated default (a worker that runs a year is restarted by then anyway)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshway default certificate")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=DEFAULT_CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@dataclasses.dataclass(frozen=True)
class ServerCertificates:
    """Server contexts by SNI with a default; `context_for(sni)` picks one."""

    exact: dict[str, ssl.SSLContext]
    prefix_wildcards: tuple[tuple[str, ssl.SSLContext], ...]  # "*.example.com" -> ".example.com"
    suffix_wildcards: tuple[tuple[str, ssl.SSLContext], ...]  # "example.*" -> "example."
    default: ssl.SSLContext

    def context_for(self, sni: str | None) -> ssl.SSLContext:
        if sni is None:
            return self.default
        if sni in self.exact:
            return self.exact[sni]
        for suffix, ctx in self.prefix_wildcards:
            if sni.endswith(suffix):
                return ctx
        for prefix, ctx in self.suffix_wildcards:
            if sni.startswith(prefix):
                return ctx
        return self.default


def compile_server_certificates(snapshot: dict, settings: Any) -> ServerCertificates:
    by_id = {c["id"]: c for c in snapshot.get("certificates") or ()}
    contexts: dict[str, ssl.SSLContext] = {}
    exact, prefixes, suffixes = {}, [], []
    for sni in snapshot.get("snis") or ():
        cert_id = (sni.get("certificate") or {}).get("id")
        if cert_id not in by_id:
            raise ValueError(f"sni {sni.get('name')!r}: certificate {cert_id} does not exist")
        if cert_id not in contexts:
            contexts[cert_id] = certificate_context(by_id[cert_id])
        _file_sni(normalize_sni(sni.get("name") or "") or "", contexts[cert_id], exact, prefixes, suffixes)
    certs = ServerCertificates(exact, tuple(prefixes), tuple(suffixes), _default_context(settings))
    # Sessions always start on the default context; the handshake moves to the SNI's one.
    certs.default.sni_callback = functools.partial(_select_certificate, certs)
    return certs


def _select_certificate(certs: ServerCertificates, ssl_obj: Any, server_name: str | None, _ctx: Any) -> None:
    chosen = certs.context_for(normalize_sni(server_name) if server_name else None)
    if chosen is not certs.default:
        ssl_obj.context = chosen


def _file_sni(name: str, ctx: ssl.SSLContext, exact: dict, prefixes: list, suffixes: list) -> None:
    if name.startswith("*."):
        prefixes.append((name[1:], ctx))
    elif name.endswith(".*"):
        suffixes.append((name[:-1], ctx))
    elif name:
        exact[name] = ctx


def _default_context(settings: Any) -> ssl.SSLContext:
    """The node's default pair (`ssl_cert`, else the prefix's generated one), else our own."""
    ctx = _server_context()
    pair = default_pair(settings)
    if pair and all(os.path.exists(p) for p in pair):
        try:
            ctx.load_cert_chain(*pair)
        except (ssl.SSLError, OSError) as e:
            raise ValueError(f"default certificate {pair[0]}: cannot load: {e}") from None
        return ctx
    if getattr(settings, "ssl_cert", ""):
        raise ValueError(f"ssl_cert: {pair[0] if pair else settings.ssl_cert} does not exist")
    cert, key = default_certificate()
    _load_pair(ctx, cert, key, "default certificate")
    return ctx


def client_context(service: dict, snapshot: dict) -> ssl.SSLContext:
    """The context for dialling a `tls://` service (the HTTP proxy's, without ALPN)."""
    label = service.get("name") or service["id"]
    cas = {c["id"]: c["cert"] for c in snapshot.get("ca_certificates") or ()}
    missing = [i for i in service.get("ca_certificates") or () if i not in cas]
    if missing:
        raise ValueError(f"service {label}: ca_certificate {missing[0]} does not exist")
    cert = _client_certificate(service, snapshot, label)
    try:
        ctx = proxy_tls.client_context(service, [cas[i] for i in service.get("ca_certificates") or ()], cert)
    except (ssl.SSLError, OSError) as e:
        raise ValueError(f"service {label}: cannot build its TLS context: {e}") from None
    ctx.set_alpn_protocols([])  # a stream upstream is not necessarily HTTP: offer no ALPN at all
    return ctx


def _client_certificate(service: dict, snapshot: dict, label: str) -> dict | None:
    ref = service.get("client_certificate")
    if not ref:
        return None
    cert = next((c for c in snapshot.get("certificates") or () if c["id"] == ref.get("id")), None)
    if cert is None:
        raise ValueError(f"service {label}: client_certificate {ref.get('id')} does not exist")
    return cert


def server_hostname(host: str) -> str | None:
    """The SNI to send upstream: the service host unless it is an IP literal."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        return host


def certificate_subject(der: bytes | None) -> str | None:
    """RFC 4514 subject of a DER certificate, for the log line."""
    if not der:
        return None
    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return "unparsable certificate"
