"""The `url` shorthand of services: `url=tcp://127.0.0.5:19000` sets protocol, host, port and path."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from meshway.model._types import FieldError

SCHEMES = ("http", "https", "grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss")
TLS_SCHEMES = ("https", "grpcs", "tls", "tls_passthrough", "wss")


def expand_url(value: Any) -> dict[str, Any]:
    """Split a service URL into Kong's fields; the port comes from the scheme when absent."""
    if not isinstance(value, str):
        raise FieldError("expected a string")
    # urlsplit refuses `_` in a scheme (tls_passthrough): split the scheme off ourselves.
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise FieldError(f"invalid url scheme '{scheme if sep else ''}': expected one of: {', '.join(SCHEMES)}")
    try:
        parts = urlsplit("http://" + rest)
        port = parts.port
    except ValueError:
        raise FieldError(f"invalid url: {value}") from None
    if not parts.hostname:
        raise FieldError(f"missing host in url: {value}")
    out: dict[str, Any] = {"protocol": scheme, "host": parts.hostname}
    out["port"] = port if port is not None else (443 if scheme in TLS_SCHEMES else 80)
    out["path"] = parts.path or None
    return out
