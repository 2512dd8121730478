"""OTLP/HTTP protobuf for the opentelemetry plugin: spans encoded one by one in the log phase,
batched into one `ExportTraceServiceRequest` per send, as Kong's `otlp.lua` shapes it (one
resource with `service.name` = `kong` unless overridden, one scope `kong-internal` 0.1.0).
"""
from __future__ import annotations

from typing import Any, Mapping

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SCOPE = ("kong-internal", "0.1.0")
SPAN_KIND_SERVER = Span.SpanKind.SPAN_KIND_SERVER
SPAN_KIND_CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
INT_ATTRIBUTES = frozenset({"http.status_code"})  # Kong sends this one as an int, others by type


def encode_span(trace_id: bytes, span_id: bytes, parent_id: bytes | None, name: str, kind: int,
                start_ns: int, end_ns: int, attributes: Mapping[str, Any], error: bool = False) -> bytes:
    span = Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent_id or b"", name=name, kind=kind,
                start_time_unix_nano=start_ns, end_time_unix_nano=end_ns)
    if error:  # Kong's span:set_status(2)
        span.status.code = Status.StatusCode.STATUS_CODE_ERROR
    _set_attributes(span.attributes, attributes)
    return span.SerializeToString()


def encode_request(spans: list[bytes], resource: Mapping[str, Any]) -> bytes:
    """The body of one export: every span of the batch under one resource and scope."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    _set_attributes(resource_spans.resource.attributes, resource)
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = SCOPE
    for encoded in spans:
        scope_spans.spans.add().MergeFromString(encoded)
    return request.SerializeToString()


def _set_attributes(target: Any, attributes: Mapping[str, Any]) -> None:
    for key, value in attributes.items():
        if value is None:
            continue
        item: KeyValue = target.add(key=key)
        if key in INT_ATTRIBUTES or (isinstance(value, int) and not isinstance(value, bool)):
            item.value.int_value = int(value)
        elif isinstance(value, bool):
            item.value.bool_value = value
        elif isinstance(value, float):
            item.value.double_value = value
        else:
            item.value.string_value = str(value)
