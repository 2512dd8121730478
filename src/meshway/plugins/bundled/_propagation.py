"""Trace context propagation shared by the tracing plugins (zipkin, opentelemetry): read the
client's trace headers in one of several formats, write this node's span into the upstream
request in one or more formats, as Kong's `kong.observability.tracing.propagation` does.

Formats: `w3c` (traceparent), `b3` (X-B3-* multi headers), `b3-single` (`b3`), `jaeger`
(`uber-trace-id`, `uberctx-*` baggage), `ot` (`ot-tracer-*`, `ot-baggage-*`). Kong's aws, gcp,
datadog and instana formats are not implemented (the plugins refuse them with a 400).

Rules (Kong's):
- Extraction tries each configured format in order; the first that finds any of its headers
  wins (`Extracted.source`). An invalid id makes that format's ids ignored (a new trace
  starts) but its sampling flag still counts.
- b3 and jaeger share the span with the client (`reuse_span_id`): the server span takes the
  client's span id and parent; w3c and ot name the client's span as the parent.
- `preserve` injects in the format that was extracted (b3 written single-header when it came
  single-header), else in the default format.
- An 8-byte trace id is left-padded with zeros for w3c; b3, jaeger and ot carry it as is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import quote

from meshway.plugins.bundled._tracecontext import format_traceparent, parse_traceparent

FORMATS = ("w3c", "b3", "b3-single", "jaeger", "ot")
UNSUPPORTED_FORMATS = ("aws", "gcp", "datadog", "instana")
EXTRACT_ORDER = ("b3", "w3c", "jaeger", "ot")  # Kong's order for header_type preserve and the named types
_HEX16, _HEX16_32 = re.compile(r"^[0-9a-fA-F]{16}$"), re.compile(r"^(?:[0-9a-fA-F]{16}|[0-9a-fA-F]{32})$")
_B3_SINGLE = re.compile(r"^([0-9a-fA-F]+)-([0-9a-fA-F]{16})-?([01d]?)-?([0-9a-fA-F]*)$")
_JAEGER = re.compile(r"^([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)$")


@dataclass(frozen=True)
class Extracted:
    """What a client's headers said; ids are None when absent or invalid."""

    source: str
    trace_id: bytes | None = None
    span_id: bytes | None = None
    parent_id: bytes | None = None
    sampled: bool | None = None
    reuse_span_id: bool = False
    single_header: bool = False
    debug: bool = False
    baggage: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Outgoing:
    """The span the upstream request continues."""

    trace_id: bytes
    span_id: bytes
    parent_id: bytes | None
    sampled: bool
    debug: bool = False
    baggage: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Propagation:
    """Kong's resolved `propagation` settings: formats to read, to write, headers to clear."""

    extract: tuple[str, ...]
    inject: tuple[str, ...]
    clear: tuple[str, ...] = ()
    default_format: str = "w3c"


def resolve(header_type: str | None, default_format: str, extract: list[str] | None = None,
            inject: list[str] | None = None, clear: list[str] | None = None) -> Propagation:
    """Kong's `get_plugin_params`: explicit `propagation` lists win over the legacy header_type."""
    if extract is not None or inject is not None or clear is not None:
        return Propagation(tuple(extract or ()), tuple(inject or ()), tuple(clear or ()), default_format)
    if header_type == "ignore":
        return Propagation((), (default_format,), (), default_format)
    if header_type in (None, "preserve"):
        return Propagation(EXTRACT_ORDER, ("preserve",), (), default_format)
    return Propagation(EXTRACT_ORDER, ("preserve", header_type), (), default_format)


def extract(prop: Propagation, get_header: Callable[[str], str | None],
            headers: Callable[[], list[tuple[str, str]]]) -> Extracted | None:
    """The first configured format whose headers the request carries, or None."""
    for fmt in prop.extract:
        reader = _EXTRACTORS.get(fmt)
        found = reader(get_header, headers) if reader else None
        if found is not None:
            return found
    return None


def inject(prop: Propagation, out: Outgoing, extracted: Extracted | None,
           set_header: Callable[[str, str], None], remove_header: Callable[[str], None]) -> None:
    for name in prop.clear:
        remove_header(name)
    for fmt in prop.inject:
        if fmt == "preserve":
            fmt = extracted.source if extracted else prop.default_format
            if fmt == "b3" and extracted is not None and extracted.single_header:
                fmt = "b3-single"
        for name, value in _INJECTORS[fmt](out):
            set_header(name, value)


def _hex(value: str | None) -> bytes | None:
    return bytes.fromhex(value) if value else None


def _sampled(value: str | None) -> bool | None:
    return {"1": True, "true": True, "0": False, "false": False}.get(value) if value is not None else None


def _b3(get: Callable[[str], str | None], headers: Any) -> Extracted | None:
    single = get("b3")
    names = ("x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags")
    multi = {n: get(n) for n in names}
    if single is None and not any(v is not None for v in multi.values()):
        return None
    trace = span = parent = None
    sampled: bool | None = None
    debug = False
    if single is not None:
        if single in ("1", "d", "0"):
            sampled, debug = single != "0", single == "d"
        else:
            m = _B3_SINGLE.match(single)
            if m and len(m[1]) in (16, 32) and len(m[4]) in (0, 16):
                trace, span, parent = m[1], m[2], m[4] or None
                if m[3]:
                    sampled, debug = m[3] != "0", m[3] == "d"
    m_sampled = _sampled(multi["x-b3-sampled"])
    if multi["x-b3-flags"] == "1":
        m_sampled, debug = True, True
    if sampled is None:
        sampled = m_sampled
    ids = (multi["x-b3-traceid"], multi["x-b3-spanid"], multi["x-b3-parentspanid"])
    valid = all(v is None or p.match(v) for v, p in zip(ids, (_HEX16_32, _HEX16, _HEX16)))
    if valid:
        trace, span, parent = trace or ids[0], span or ids[1], parent or ids[2]
    if trace is None:
        span = parent = None
    return Extracted("b3", _hex(trace), _hex(span), _hex(parent), sampled, reuse_span_id=True,
                     single_header=single is not None, debug=debug)


def _w3c(get: Callable[[str], str | None], headers: Any) -> Extracted | None:
    value = get("traceparent")
    if value is None:
        return None
    parent = parse_traceparent(value)
    if parent is None:
        return Extracted("w3c")  # present but invalid: Kong starts a new trace
    return Extracted("w3c", parent.trace_id, parent.span_id, None, parent.sampled)


def _jaeger(get: Callable[[str], str | None], headers: Callable[[], list[tuple[str, str]]]) -> Extracted | None:
    value = get("uber-trace-id")
    if not value:
        return None
    m = _JAEGER.match(value)
    if (m is None or len(m[1]) > 32 or int(m[1], 16) == 0 or len(m[2]) > 16 or int(m[2], 16) == 0
            or len(m[4]) not in (1, 2)):
        return Extracted("jaeger")
    parent = m[3] if len(m[3]) == 16 and int(m[3], 16) else None
    return Extracted("jaeger", _pad(m[1], 16 if len(m[1]) <= 16 else 32), _pad(m[2], 16), _hex(parent),
                     bool(int(m[4], 16) & 1), reuse_span_id=True, baggage=_baggage(headers, "uberctx-"))


def _ot(get: Callable[[str], str | None], headers: Callable[[], list[tuple[str, str]]]) -> Extracted | None:
    trace, span, sampled = get("ot-tracer-traceid"), get("ot-tracer-spanid"), get("ot-tracer-sampled")
    if trace is None and span is None and sampled is None:
        return None
    if trace is None or not _HEX16_32.match(trace) or (span is not None and not _HEX16.match(span)):
        trace = span = None
    return Extracted("ot", _hex(trace), _hex(span), None, _sampled(sampled), baggage=_baggage(headers, "ot-baggage-"))


def _pad(value: str, digits: int) -> bytes:
    return bytes.fromhex(value.rjust(digits, "0"))


def _baggage(headers: Callable[[], list[tuple[str, str]]], prefix: str) -> tuple[tuple[str, str], ...]:
    return tuple((k.lower()[len(prefix):], v) for k, v in headers() if k.lower().startswith(prefix))


def _w3c_out(out: Outgoing) -> list[tuple[str, str]]:
    return [("traceparent", format_traceparent(out.trace_id.rjust(16, b"\0"), out.span_id, out.sampled))]


def _b3_out(out: Outgoing) -> list[tuple[str, str]]:
    headers = [("x-b3-traceid", out.trace_id.hex()), ("x-b3-spanid", out.span_id.hex())]
    if out.parent_id:
        headers.append(("x-b3-parentspanid", out.parent_id.hex()))
    headers.append(("x-b3-flags", "1") if out.debug else ("x-b3-sampled", "1" if out.sampled else "0"))
    return headers


def _b3_single_out(out: Outgoing) -> list[tuple[str, str]]:
    flag = "d" if out.debug else ("1" if out.sampled else "0")
    value = f"{out.trace_id.hex()}-{out.span_id.hex()}-{flag}"
    return [("b3", value + (f"-{out.parent_id.hex()}" if out.parent_id else ""))]


def _jaeger_out(out: Outgoing) -> list[tuple[str, str]]:
    parent = out.parent_id.hex() if out.parent_id else "0"
    return [("uber-trace-id", f"{out.trace_id.hex()}:{out.span_id.hex()}:{parent}:{'01' if out.sampled else '00'}"),
            *((f"uberctx-{k}", quote(v, safe="")) for k, v in out.baggage)]


def _ot_out(out: Outgoing) -> list[tuple[str, str]]:
    return [("ot-tracer-traceid", out.trace_id.hex()), ("ot-tracer-spanid", out.span_id.hex()),
            ("ot-tracer-sampled", "1" if out.sampled else "0"),
            *((f"ot-baggage-{k}", quote(v, safe="")) for k, v in out.baggage)]


_EXTRACTORS: Mapping[str, Callable[..., Extracted | None]] = {"b3": _b3, "w3c": _w3c, "jaeger": _jaeger, "ot": _ot}
_INJECTORS: Mapping[str, Callable[[Outgoing], list[tuple[str, str]]]] = {
    "w3c": _w3c_out, "b3": _b3_out, "b3-single": _b3_single_out, "jaeger": _jaeger_out, "ot": _ot_out}
