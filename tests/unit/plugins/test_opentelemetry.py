"""opentelemetry: W3C traceparent parsing (the spec's valid and invalid forms), config as Kong's
schema takes it, and OTLP encoding read back with opentelemetry-proto."""
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled import _otlp
from meshway.plugins.bundled._tracecontext import (format_traceparent, new_span_id, new_trace_id,
                                                   parse_traceparent)

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_a_valid_traceparent_round_trips():
    parent = parse_traceparent(f"00-{TRACE}-{SPAN}-01")
    assert (parent.trace_id.hex(), parent.span_id.hex(), parent.sampled) == (TRACE, SPAN, True)
    assert format_traceparent(parent.trace_id, parent.span_id, False) == f"00-{TRACE}-{SPAN}-00"
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-02").sampled is False  # only bit 0 is `sampled`
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-future").trace_id.hex() == TRACE  # a later version's extra


@pytest.mark.parametrize("value", [
    None, "", "junk", f"ff-{TRACE}-{SPAN}-01", f"00-{'0' * 32}-{SPAN}-01", f"00-{TRACE}-{'0' * 16}-01",
    f"00-{TRACE.upper()}-{SPAN}-01", f"00-{TRACE}-{SPAN}-01-extra", f"00-{TRACE[:-1]}-{SPAN}-01",
])
def test_invalid_traceparents_start_a_new_trace(value):
    assert parse_traceparent(value) is None


def test_new_ids_have_the_spec_sizes_and_are_never_zero():
    ids = {new_trace_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 16 and any(i) for i in ids)
    assert len(new_span_id()) == 8


def _fields(config):
    with pytest.raises(PluginConfigError) as e:
        validate_plugin_config("opentelemetry", config)
    return e.value.fields["config"]


def test_config_takes_kongs_fields_and_defaults():
    conf = validate_plugin_config("opentelemetry", {"endpoint": "http://otel:4318/v1/traces"})  # Kong's old name
    assert conf["traces_endpoint"] == "http://otel:4318/v1/traces"
    assert conf["queue"]["max_batch_size"] == 200 and conf["header_type"] == "preserve"
    assert (conf["connect_timeout"], conf["send_timeout"], conf["read_timeout"]) == (1000, 5000, 5000)
    assert conf["propagation"]["default_format"] == "w3c"


def test_config_refusals_name_the_field():
    assert "traces_endpoint" in _fields({})["@entity"]
    assert _fields({"traces_endpoint": "ftp://x"})["traces_endpoint"] == "invalid url scheme"
    assert "not supported by meshway yet" in _fields({"traces_endpoint": "http://a/", "header_type": "aws"})["header_type"]
    assert "logs" in _fields({"traces_endpoint": "http://a/", "logs_endpoint": "http://a/logs"})["logs_endpoint"]
    assert "sampling_rate" in _fields({"traces_endpoint": "http://a/", "sampling_rate": 1.5})


def test_spans_batch_into_one_export_request():
    spans = [_otlp.encode_span(bytes.fromhex(TRACE), bytes([i + 1]) * 8, None, "kong", _otlp.SPAN_KIND_SERVER,
                               10, 20, {"http.status_code": 200, "http.method": "GET", "skipped": None})
             for i in range(3)]
    request = ExportTraceServiceRequest.FromString(_otlp.encode_request(spans, {"service.name": "kong"}))
    [resource_spans] = request.resource_spans
    assert resource_spans.resource.attributes[0].value.string_value == "kong"
    [scope_spans] = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == _otlp.SCOPE
    assert [s.span_id[0] for s in scope_spans.spans] == [1, 2, 3]
    attrs = {kv.key: kv.value for kv in scope_spans.spans[0].attributes}
    assert attrs["http.status_code"].int_value == 200 and attrs["http.method"].string_value == "GET"
    assert "skipped" not in attrs
