"""gRPC over HTTP/2: recognising gRPC requests and turning proxy answers into gRPC errors.

Rules (Kong's `kong.response.exit` for gRPC, kept):
- A request is gRPC when its content-type starts with `application/grpc` (HTTP/2 only).
- An answer the proxy makes itself (no route, 502/503/504, plugin exits) keeps its HTTP status
  and gets `content-type: application/grpc`, `grpc-status` (HTTP status mapped by Kong's table;
  other 5xx -> 13 INTERNAL, other 4xx -> 3 INVALID_ARGUMENT, 2xx -> 0, else 2 UNKNOWN) and
  `grpc-message` (the JSON body's `message`, else the body text, else the code's name), no body,
  END_STREAM on the HEADERS frame (a "trailers-only" response). gRPC clients prefer
  `grpc-status` over the HTTP status.
"""
from __future__ import annotations

import json

__all__ = ["GRPC_MESSAGES", "HTTP_TO_GRPC", "grpc_error_headers", "grpc_status_for", "is_grpc"]

HTTP_TO_GRPC = {200: 0, 400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 499: 1, 500: 13, 501: 12,
                503: 14, 504: 4}
GRPC_MESSAGES = {0: "OK", 1: "Canceled", 2: "Unknown", 3: "InvalidArgument", 4: "DeadlineExceeded",
                 5: "NotFound", 6: "AlreadyExists", 7: "PermissionDenied", 8: "ResourceExhausted",
                 9: "FailedPrecondition", 10: "Aborted", 11: "OutOfRange", 12: "Unimplemented",
                 13: "Internal", 14: "Unavailable", 15: "DataLoss", 16: "Unauthenticated"}
_SAFE = frozenset(range(0x20, 0x7F)) - {ord("%")}


def is_grpc(content_type: bytes | None) -> bool:
    """Whether a request's content-type makes it a gRPC call."""
    return content_type is not None and content_type[:16].lower() == b"application/grpc"


def grpc_status_for(http_status: int) -> int:
    """Kong's HTTP -> gRPC status mapping."""
    code = HTTP_TO_GRPC.get(http_status)
    if code is not None:
        return code
    if 500 <= http_status <= 599:
        return 13
    if 400 <= http_status <= 499:
        return 3
    if 200 <= http_status <= 299:
        return 0
    return 2


def percent_encode(text: str) -> bytes:
    """`grpc-message` encoding: bytes outside printable ASCII (and `%`) as %XX."""
    raw = text.encode("utf-8")
    if all(b in _SAFE for b in raw):
        return raw
    return b"".join(bytes([b]) if b in _SAFE else b"%%%02X" % b for b in raw)


def _message(body: bytes, code: int) -> str:
    if body:
        try:
            doc = json.loads(body)
        except ValueError:
            return body.decode("utf-8", "replace")
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            return doc["message"]
    return GRPC_MESSAGES.get(code, "Unknown")


def grpc_error_headers(status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
                       ) -> list[tuple[bytes, bytes]]:
    """The trailers-only HEADERS of a gRPC error answer (`:status` first)."""
    extra = [(k.lower(), v) for k, v in headers or () if k.lower() not in (b"content-type", b"content-length")]
    names = {k for k, _ in extra}
    code = int(dict(extra)[b"grpc-status"]) if b"grpc-status" in names else grpc_status_for(status)
    out = [(b":status", b"%d" % status), (b"content-type", b"application/grpc")]
    out += [h for h in extra if h[0] not in (b"grpc-status", b"grpc-message")]
    out.append((b"grpc-status", b"%d" % code))
    message = dict(extra).get(b"grpc-message") or percent_encode(_message(body, code))
    out.append((b"grpc-message", message))
    out.append((b"content-length", b"0"))
    return out
