"""opentelemetry: W3C trace context through the proxy, and the request's span exported as
OTLP/HTTP protobuf in batches (Kong's plugin: its config fields, defaults and span names).

What a request gets, as Kong's plugin with its `request` and `balancer` instrumentations:
- `access`: the client's trace context (`header_type`/`propagation.extract`: W3C `traceparent`,
  B3 multi or single, Jaeger, OT; the shared `_propagation` module) names the parent span;
  otherwise a new trace starts. The sampling decision follows the parent's `sampled`
  flag, else `sampling_rate`. The upstream request carries a `traceparent` naming as its parent
  the `kong.balancer` span of the try that reaches it (a child of the request span; its id is
  made in `access`, as Kong pre-creates that span), in the format the context came
  in (`preserve`), else `propagation.default_format` (w3c), plus `header_type` when named.
  `tracestate` is forwarded as the client sent it.
- `response`: `http_response_header_for_traceid`, when set, gives the client the trace id.
- `log`: a sampled request's span `kong` (kind SERVER, Kong's attributes: `http.method`,
  `http.url`, `http.host`, `http.scheme`, `http.flavor`, `http.client_ip`, `net.peer.ip`,
  `kong.request.id`, `http.status_code`, `http.route`) and its children `kong.balancer`, one per
  balancer try (kind CLIENT, `try_count`, `net.peer.ip`/`net.peer.port` of the peer picked,
  `net.peer.name`, and `http.status_code` with status ERROR for a failed try), go into a queue
  shared by every instance with the same endpoint and settings; batches are POSTed as
  `application/x-protobuf`. These are the spans Kong exports with `tracing_instrumentations =
  request,balancer`; the upstream's parent is then the last try's `kong.balancer` span.

Not yet (refused with a 400 naming the field rather than accepted and ignored): `logs_endpoint`,
the aws, gcp, datadog and instana header formats; and Kong's other spans (`kong.router`,
`kong.access.plugin.*`, `kong.dns`) are not made.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from meshway import __version__
from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.bundled import _otlp, _propagation
from meshway.plugins.bundled._propagation_config import HEADER_TYPES, PropagationConfig, supported as _supported
from meshway.plugins.bundled._queue import BatchQueue, QueueConfig
from meshway.plugins.bundled._trace_export import SpanBatchSender
from meshway.plugins.bundled._tracecontext import new_span_id, new_trace_id

# Instances with the same destination and settings share one queue (as http-log's), so a config
# reload neither loses queued spans nor opens a second stream to the collector.
_QUEUES: dict[tuple, BatchQueue] = {}


class Propagation(PropagationConfig):
    """Kong's `propagation` record (default format w3c for this plugin)."""


class OpenTelemetryConfig(PluginConfig):
    """Kong's opentelemetry schema (3.8+; `endpoint` is its deprecated name of `traces_endpoint`)."""

    traces_endpoint: str | None = None
    logs_endpoint: str | None = None
    headers: dict[str, str] | None = None
    resource_attributes: dict[str, str] | None = None
    queue: QueueConfig = Field(default_factory=lambda: QueueConfig(max_batch_size=200))
    batch_span_count: int | None = None
    batch_flush_delay: int | None = None
    connect_timeout: int = Field(default=1000, ge=0, le=2**31 - 2)
    send_timeout: int = Field(default=5000, ge=0, le=2**31 - 2)
    read_timeout: int = Field(default=5000, ge=0, le=2**31 - 2)
    http_response_header_for_traceid: str | None = None
    header_type: Literal[HEADER_TYPES] = "preserve"  # type: ignore[valid-type]
    sampling_rate: float | None = Field(default=None, ge=0, le=1)
    propagation: Propagation = Field(default_factory=Propagation)

    @model_validator(mode="before")
    @classmethod
    def _endpoint_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "endpoint" in data:
            data = dict(data)
            endpoint = data.pop("endpoint")
            if endpoint is not None:
                data.setdefault("traces_endpoint", endpoint)
        return data

    @field_validator("traces_endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("missing host in url" if parts.scheme in ("http", "https") else "invalid url scheme")
        return value

    @field_validator("logs_endpoint")
    @classmethod
    def _no_logs_yet(cls, value: str | None) -> None:
        if value is not None:
            raise ValueError("logs are not exported by meshway yet (traces_endpoint only)")
        return None

    @field_validator("header_type")
    @classmethod
    def _supported(cls, value: str) -> str:
        return _supported(value)

    @model_validator(mode="after")
    def _an_endpoint(self) -> "OpenTelemetryConfig":
        if self.traces_endpoint is None:  # Kong: at least one of traces_endpoint, logs_endpoint
            raise ValueError("at least one of these fields must be non-empty: 'traces_endpoint'")
        return self


def _otlp_sender(conf: OpenTelemetryConfig) -> SpanBatchSender:
    """Batches as one ExportTraceServiceRequest; a 4xx/5xx is a failed send (Kong's exporter)."""
    resource = {"service.name": "kong", "service.version": __version__, "service.instance.id": _node_id(),
                **(conf.resource_attributes or {})}
    return SpanBatchSender(conf.traces_endpoint, {**(conf.headers or {}), "Content-Type": "application/x-protobuf"},
                           (conf.connect_timeout, conf.send_timeout, conf.read_timeout),
                           lambda batch: _otlp.encode_request(batch, resource), accepted=range(0, 400))


class OpenTelemetry(Plugin):
    """Trace context propagation and span export over OTLP/HTTP."""

    name = "opentelemetry"
    priority = 14
    Config = OpenTelemetryConfig
    protocols = ("grpc", "grpcs", "http", "https")

    def __init__(self, config: OpenTelemetryConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.queue = _queue_for(config)
        p = config.propagation
        self.propagation = _propagation.resolve(config.header_type, p.default_format, p.extract, p.inject, p.clear)
        self.rate = 1.0 if config.sampling_rate is None else config.sampling_rate
        self.trace_header = config.http_response_header_for_traceid
        if not self.trace_header:
            self.response = None  # nothing to add to responses: the engine skips the phase

    def access(self, ctx: RequestContext) -> None:
        got = _propagation.extract(self.propagation, ctx.get_header, ctx.get_headers)
        trace_id = got.trace_id if got is not None and got.trace_id else new_trace_id()
        parent_id = (got.span_id or got.parent_id) if got is not None and got.trace_id else None
        sampled = got.sampled if got is not None and got.sampled is not None else random.random() < self.rate
        span_id, balancer_id = new_span_id(), new_span_id()
        # OTLP ids are 16 bytes: a 64-bit (b3, jaeger, ot) trace id is left-padded, as Kong's exporter does
        ctx.shared["opentelemetry"] = (trace_id.rjust(16, b"\0"), span_id, parent_id, sampled, balancer_id)
        # the upstream's parent is the balancer span of the try that reaches it, made now (Kong's
        # pre-created balancer span), the request span being its parent
        out = _propagation.Outgoing(trace_id, balancer_id, span_id, sampled, debug=bool(got and got.debug),
                                    baggage=got.baggage if got is not None else ())
        _propagation.inject(self.propagation, out, got, ctx.set_header, ctx.remove_header)

    def response(self, ctx: RequestContext) -> None:
        span = ctx.shared.get("opentelemetry")
        if span is not None:
            ctx.set_response_header(self.trace_header, span[0].hex())

    def log(self, ctx: RequestContext) -> None:
        span = ctx.shared.get("opentelemetry")
        if span is None or not span[3]:
            return  # not sampled (or answered before access): propagated, not exported
        trace_id, span_id, parent_id, _, balancer_id = span
        start_ns = int(ctx.started_at * 1e9)
        end_ns = max(time.time_ns(), start_ns)
        for encoded in _balancer_spans(ctx, trace_id, span_id, balancer_id, end_ns):
            self.queue.add(encoded)
        self.queue.add(_otlp.encode_span(trace_id, span_id, parent_id, "kong", _otlp.SPAN_KIND_SERVER, start_ns,
                                         end_ns, _attributes(ctx)))


def _balancer_spans(ctx: RequestContext, trace_id: bytes, parent_id: bytes, last_id: bytes, end_ns: int) -> list[bytes]:
    """Kong's `kong.balancer` spans (kong/observability/tracing/instrumentation.lua), one per try,
    children of the request span. A failed try (`http.status_code`, status ERROR) lasts from its
    start to its connection's failure; the last try, when it reached the upstream, carries the
    span id the upstream got as its parent and lasts until the response ended."""
    spans, count = [], len(ctx.tries)
    for i, (entry, connect) in enumerate(zip(ctx.tries, ctx.upstream_connect_time), 1):
        failed = "state" in entry
        attributes = {"try_count": i, "net.peer.ip": entry["ip"], "net.peer.port": entry["port"]}
        if failed:
            attributes["http.status_code"] = entry["code"]
        attributes["net.peer.name"] = ctx.balancer_hostname
        start = entry["balancer_start_ns"]
        if i == count and not failed:
            span_id, end = last_id, end_ns
        else:
            span_id = new_span_id()
            end = min(start + entry["balancer_latency_ns"] + int((connect or 0) * 1e9), end_ns)
        spans.append(_otlp.encode_span(trace_id, span_id, parent_id, "kong.balancer", _otlp.SPAN_KIND_CLIENT,
                                       start, max(end, start), attributes, error=failed))
    return spans


def _attributes(ctx: RequestContext) -> dict[str, Any]:
    """Kong's request-span attributes (kong/observability/tracing/instrumentation.lua)."""
    route = ctx.route or {}
    uri = ctx.path + (f"?{ctx.query}" if ctx.query else "")
    return {
        "http.method": ctx.method, "http.url": f"{ctx.scheme}://{ctx.host}{uri}", "http.host": ctx.host,
        "http.scheme": ctx.scheme, "http.flavor": ctx.http_version, "http.client_ip": ctx.client_ip,
        "net.peer.ip": ctx.client_ip, "kong.request.id": ctx.request_id,
        "http.status_code": ctx.response_status, "http.route": (route.get("paths") or [""])[0],
    }


def _queue_for(config: OpenTelemetryConfig) -> BatchQueue:
    queue_conf = config.queue
    if config.batch_span_count is not None or config.batch_flush_delay is not None:  # Kong's deprecated names
        queue_conf = queue_conf.model_copy(update={
            k: v for k, v in (("max_batch_size", config.batch_span_count),
                              ("max_coalescing_delay", config.batch_flush_delay)) if v is not None})
    key = (config.traces_endpoint, tuple(sorted((config.headers or {}).items())),
           tuple(sorted((config.resource_attributes or {}).items())), config.connect_timeout, config.send_timeout,
           config.read_timeout, queue_conf)
    queue = _QUEUES.get(key)
    if queue is None:
        queue = _QUEUES[key] = BatchQueue(f"opentelemetry {urlsplit(config.traces_endpoint).hostname}",
                                          _otlp_sender(config), queue_conf)
    return queue


def _node_id() -> str | None:
    """The node's id (Kong's `service.instance.id`): the prefix's `node_id` file, when there is one."""
    try:
        return (Path(os.environ.get("MESHWAY_PREFIX", "")) / "node_id").read_text().strip() or None
    except OSError:
        return None


PLUGIN = OpenTelemetry
