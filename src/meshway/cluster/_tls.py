"""Who may talk to whom on the cluster channel.

Rules:
- Both sides always present their cluster certificate (mutual TLS, TLS 1.2 minimum).
- `cluster_mtls = shared`: the only trust anchor is the cluster certificate itself, and after the
  handshake the peer's certificate must be byte-identical to ours (SHA-256 of the DER). The
  fingerprint check matters when the shared certificate is a CA (the walkthrough's openssl cert
  is): a certificate it signed would pass chain verification but is not "the" certificate.
- `cluster_mtls = pki`: the trust anchor is `cluster_ca_cert`; any certificate it issued is
  accepted. A DP checks the CP's name against `cluster_server_name` when that is set.
"""
from __future__ import annotations

import re
import ssl

from websockets.exceptions import ConnectionClosed

from meshway import tlspolicy
from meshway.pki import ClusterCredentials, fingerprint


def _base(purpose: int, creds: ClusterCredentials) -> ssl.SSLContext:
    ctx = tlspolicy.context(purpose)
    ctx.load_cert_chain(*creds.pair)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if creds.mode == "pki":
        ctx.load_verify_locations(cadata=creds.ca_pem.decode())
    else:
        ctx.load_verify_locations(cadata=creds.cert_pem.decode())
        # The shared cert is usually a self-signed leaf: trust it as the anchor by itself.
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def server_context(creds: ClusterCredentials) -> ssl.SSLContext:
    """The control plane's listener context."""
    return _base(ssl.PROTOCOL_TLS_SERVER, creds)


def client_context(creds: ClusterCredentials) -> ssl.SSLContext:
    """The data plane's context for dialing the control plane."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, creds)
    ctx.check_hostname = creds.mode == "pki" and bool(creds.server_name)
    return ctx


def peer_refusal(creds: ClusterCredentials, peer_der: bytes | None) -> str | None:
    """None if the verified peer certificate is acceptable, else why it is not."""
    if peer_der is None:
        return "no client certificate"
    if creds.mode == "shared" and fingerprint(peer_der) != creds.fingerprint:
        return (f"certificate sha256:{fingerprint(peer_der)[:16]}... is not the cluster certificate "
                f"sha256:{creds.fingerprint[:16]}...")
    return None


def requirement(creds: ClusterCredentials) -> str:
    """What a data plane must present, for log lines."""
    if creds.mode == "pki":
        return f"cluster_mtls = pki: data planes must present a certificate issued by {creds.ca_path}"
    return f"cluster_mtls = shared: data planes must present the cluster certificate {creds.cert_path}"


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed connection, without OpenSSL's source locations."""
    response = getattr(exc, "response", None)  # websockets' InvalidStatus carries the HTTP answer
    if response is not None and getattr(response, "status_code", None):
        body = bytes(response.body or b"").decode(errors="replace").strip()
        return f"control plane answered HTTP {response.status_code}" + (f": {body[:300]}" if body else "")
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionClosed):
        close = exc.rcvd or exc.sent
        return f"connection closed ({close.code} {close.reason})".strip() if close else "connection lost"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(text))
