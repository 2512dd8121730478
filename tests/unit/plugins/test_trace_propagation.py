"""The shared trace-context propagation (zipkin, opentelemetry): Kong's extract/inject rules per format."""
from __future__ import annotations

from meshway.plugins.bundled import _propagation as p

TRACE, SPAN, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "a1b2c3d4e5f60718"
PRESERVE = p.resolve("preserve", "b3")


def _extract(headers: dict, prop: p.Propagation = PRESERVE) -> p.Extracted | None:
    lower = {k.lower(): v for k, v in headers.items()}
    return p.extract(prop, lower.get, lambda: list(headers.items()))


def _inject(prop: p.Propagation, out: p.Outgoing, got: p.Extracted | None) -> dict:
    sent: dict = {}
    p.inject(prop, out, got, sent.__setitem__, lambda name: sent.pop(name, None))
    return sent


def test_b3_multi_and_single_share_the_clients_span():
    got = _extract({"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-ParentSpanId": PARENT, "X-B3-Sampled": "0"})
    assert (got.source, got.trace_id.hex(), got.span_id.hex(), got.parent_id.hex()) == ("b3", TRACE, SPAN, PARENT)
    assert got.reuse_span_id and got.sampled is False and not got.single_header
    single = _extract({"b3": f"{TRACE[16:]}-{SPAN}-d"})
    assert single.trace_id.hex() == TRACE[16:] and single.sampled is True and single.debug and single.single_header
    assert _extract({"b3": "0"}).sampled is False and _extract({"b3": "0"}).trace_id is None


def test_invalid_ids_start_a_new_trace_but_the_sampling_flag_counts():
    for headers in ({"x-b3-traceid": "xyz", "x-b3-spanid": SPAN, "x-b3-sampled": "1"},
                    {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN[:8], "x-b3-sampled": "1"}):
        got = _extract(headers)
        assert got.trace_id is None and got.span_id is None and got.sampled is True, headers
    # a single header whose trace id has a bad length is ignored whole, flag included (as Kong)
    got = _extract({"b3": f"{TRACE[:20]}-{SPAN}-1"})
    assert got.trace_id is None and got.sampled is None
    assert _extract({"uber-trace-id": f"{'0' * 32}:{SPAN}:0:1"}).trace_id is None
    assert _extract({"traceparent": "junk"}).trace_id is None
    assert _extract({}) is None


def test_jaeger_and_ot_with_baggage():
    got = _extract({"uber-trace-id": f"{TRACE}:{SPAN}:0:3", "uberctx-User": "a b"})
    assert (got.trace_id.hex(), got.span_id.hex(), got.parent_id, got.sampled) == (TRACE, SPAN, None, True)
    assert got.reuse_span_id and got.baggage == (("user", "a b"),)
    out = p.Outgoing(got.trace_id, bytes.fromhex(PARENT), got.span_id, True, baggage=got.baggage)
    assert _inject(PRESERVE, out, got) == {"uber-trace-id": f"{TRACE}:{PARENT}:{SPAN}:01", "uberctx-user": "a%20b"}
    ot = _extract({"ot-tracer-traceid": TRACE[16:], "ot-tracer-spanid": SPAN, "ot-tracer-sampled": "true"})
    assert (ot.source, ot.trace_id.hex(), ot.span_id.hex(), ot.reuse_span_id) == ("ot", TRACE[16:], SPAN, False)


def test_preserve_writes_back_the_format_read_and_header_type_adds_one():
    got = _extract({"b3": f"{TRACE}-{SPAN}-1"})
    out = p.Outgoing(bytes.fromhex(TRACE[16:]), bytes.fromhex(PARENT), bytes.fromhex(SPAN), True)
    assert _inject(PRESERVE, out, got) == {"b3": f"{TRACE[16:]}-{PARENT}-1-{SPAN}"}
    sent = _inject(p.resolve("w3c", "b3"), out, None)  # nothing read: default b3, plus w3c (zero-padded id)
    assert sent["x-b3-traceid"] == TRACE[16:] and sent["x-b3-parentspanid"] == SPAN and sent["x-b3-sampled"] == "1"
    assert sent["traceparent"] == f"00-{'0' * 16}{TRACE[16:]}-{PARENT}-01"
    ignore = p.resolve("ignore", "w3c")
    assert _extract({"traceparent": f"00-{TRACE}-{SPAN}-01"}, ignore) is None
    explicit = p.resolve("preserve", "w3c", extract=["w3c"], inject=["ot"], clear=["x-old"])
    assert _extract({"x-b3-traceid": TRACE}, explicit) is None
    sent = {"x-old": "1"}
    p.inject(explicit, out, None, sent.__setitem__, lambda name: sent.pop(name, None))
    assert sent == {"ot-tracer-traceid": TRACE[16:], "ot-tracer-spanid": PARENT, "ot-tracer-sampled": "1"}
