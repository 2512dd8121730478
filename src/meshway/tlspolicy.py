"""The TLS policy of every context meshway builds for both ends it controls.

Server contexts (proxy HTTP and stream listeners, mesh hops, the data plane server, the hybrid
cluster listener, the Admin API's `ssl` listener) and client contexts to peers that are
meshway too (sidecar to sidecar, data plane to control plane) all take it from here.
Contexts to arbitrary upstreams do not: as nginx's `proxy_ssl_ciphers DEFAULT`, they keep
OpenSSL's defaults so that an old origin stays reachable.
"""
from __future__ import annotations

import ssl

__all__ = ["AEAD_CIPHERS", "apply", "context"]

# Mozilla's "intermediate" profile (v5.7) for TLS 1.2: forward-secret AEAD suites only, no CBC
# (Lucky13-style padding oracles) and no static RSA. TLS 1.3 suites are all AEAD already.
AEAD_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
))


def apply(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """TLS 1.2 and 1.3 only, AEAD suites only in TLS 1.2, no compression (CRIME)."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(AEAD_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


def context(purpose: int) -> ssl.SSLContext:
    """A new context (`ssl.PROTOCOL_TLS_SERVER` or `_CLIENT`) with the policy applied."""
    return apply(ssl.SSLContext(purpose))
