"""The HTTP/2 connection preface, without the HTTP/2 package: the HTTP/1.1 protocol checks a
plain `http2` listener's first bytes with it, and `h2` (imported by `meshway.proxy.http2`) is
then only loaded by a worker that gets an HTTP/2 connection."""
from __future__ import annotations

__all__ = ["PREFACE", "is_preface"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def is_preface(data: bytes) -> bool:
    """Whether a connection's first bytes are an HTTP/2 attempt: they begin with (a start of)
    the preface's request line `PRI * HTTP/2.0` (HTTP/1.1 has no PRI method; h2 judges the rest)."""
    n = min(len(data), 16)
    return n >= 3 and data[:n] == PREFACE[:n]
