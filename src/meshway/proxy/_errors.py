"""Responses the proxy makes itself: Kong's JSON error bodies and status reasons."""
from __future__ import annotations

import json
import socket
from http import HTTPStatus
from typing import Any, Mapping

from meshway import __version__

__all__ = ["ALLOW", "MESSAGES", "NAME_RESOLUTION_FAILED", "REASONS", "SERVER", "connect_failure", "error_body",
           "failure_body", "render_response"]

SERVER = f"meshway/{__version__}"
NO_ROUTE = "no Route matched with those values"
NO_PEER = "failure to get a peer from the ring-balancer"
NAME_RESOLUTION_FAILED = "name resolution failed"
# getaddrinfo's "no such name" (NXDOMAIN) and "no address for it" (empty answer): the two DNS
# answers Kong turns into 503 (kong/runloop/balancer/init.lua). A server that cannot be reached
# (EAI_AGAIN) stays a connect error.
_NAME_ERRORS = frozenset(getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, n))

MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    411: "Length required",
    412: "Precondition failed",
    413: "Payload too large",
    414: "URI too long",
    417: "Expectation failed",
    426: "Please use HTTPS protocol",
    431: "Request header or cookie too large",
    494: "Request header or cookie too large",
    500: "An unexpected error occurred",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
}

# Every 405 says what the proxy takes (RFC 9110 15.5.6): all methods but CONNECT and TRACE.
ALLOW = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}
REASONS[494] = b"Request Header Or Cookie Too Large"


def error_body(status: int, message: str | None = None, **extra: Any) -> bytes:
    """Kong's `{"message": ...}` body for a status."""
    msg = message or MESSAGES.get(status) or f"The upstream server responded with {status}"
    return json.dumps({"message": msg, **extra}, separators=(",", ":")).encode()


def connect_failure(exc: BaseException) -> tuple[int, str]:
    """Status and reason of a failed upstream connect: as Kong, 503 `name resolution failed`
    when the service's host has no address, else 502."""
    if isinstance(exc, socket.gaierror) and exc.errno in _NAME_ERRORS:
        return 503, NAME_RESOLUTION_FAILED
    return 502, f"connect error: {exc}"


def failure_body(status: int, why: str) -> bytes:
    """The body of an answer to an upstream failure: Kong's default for the status, except the
    DNS failure, whose reason Kong shows (`{"message": "name resolution failed"}`)."""
    return error_body(status, why if why == NAME_RESOLUTION_FAILED else None)


def encode_body(body: Any) -> tuple[bytes, bytes | None]:
    """A plugin's `exit` body as bytes and its default content type."""
    if body is None:
        return b"", None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), None
    if isinstance(body, str):
        return body.encode(), b"text/plain; charset=utf-8"
    return json.dumps(body, separators=(",", ":")).encode(), b"application/json; charset=utf-8"


def render_response(status: int, body: bytes, headers: Mapping[str, str] | list | None = None, *,
                    content_type: bytes | None = b"application/json; charset=utf-8", keep_alive: bool = True,
                    server: bool = True, head: bool = False) -> bytes:
    """A complete HTTP/1.1 response the proxy generates itself."""
    out = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))]
    names = set()
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, value in items:
        name_b = name.encode("latin-1") if isinstance(name, str) else name
        value_b = value.encode("latin-1") if isinstance(value, str) else value
        names.add(name_b.lower())
        out.append(name_b + b": " + value_b + b"\r\n")
    if status == 405 and b"allow" not in names:
        out.append(b"Allow: " + ALLOW + b"\r\n")
    if content_type and b"content-type" not in names and body:
        out.append(b"Content-Type: " + content_type + b"\r\n")
    if server and b"server" not in names:
        out.append(b"Server: " + SERVER.encode() + b"\r\n")
    out.append(b"Content-Length: %d\r\n" % len(body))
    out.append(b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
    if not head:
        out.append(body)
    return b"".join(out)
