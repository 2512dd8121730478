"""W3C Trace Context (`traceparent`), pure: parse what a client sent, format what goes upstream.

Rules (https://www.w3.org/TR/trace-context/, "traceparent Header"):
- `version-traceid-parentid-flags`, lower-case hex: 2, 32, 16 and 2 digits. Version `ff` is
  invalid; a version above 00 may carry more fields after the flags (`-...`), which are ignored.
- An all-zero trace id or parent id is invalid. An invalid header is ignored: a new trace starts,
  as Kong's w3c extractor does.
- Bit 0 of the flags is `sampled`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


@dataclass(frozen=True)
class TraceParent:
    """A remote span this request continues: its trace, its span id and whether it was sampled."""

    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes
    sampled: bool


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The parent a `traceparent` header names, or None when absent or invalid."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace, span, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    return TraceParent(bytes.fromhex(trace), bytes.fromhex(span), bool(int(flags, 16) & 1))


def format_traceparent(trace_id: bytes, span_id: bytes, sampled: bool) -> str:
    return f"00-{trace_id.hex()}-{span_id.hex()}-{'01' if sampled else '00'}"


def new_trace_id() -> bytes:
    return _nonzero(16)


def new_span_id() -> bytes:
    return _nonzero(8)


def _nonzero(size: int) -> bytes:
    while True:  # an all-zero id is invalid; 2**-64 odds, so this loops once
        value = os.urandom(size)
        if any(value):
            return value
