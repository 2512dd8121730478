"""zipkin: trace context through the proxy (B3 multi/single, W3C, Jaeger, OT headers) and each
sampled request's spans POSTed to a Zipkin v2 collector as JSON, in batches through the shared
queue (Kong's plugin: its config fields, defaults, span names, kinds, tags and annotations).

What a request gets, as Kong's:
- `access` (this plugin runs first: priority 100000): the client's trace headers are read
  (`header_type`/`propagation.extract`); b3 and jaeger share the client's span (the request span
  takes its id and parent), w3c and ot make it the parent. Sampling follows the client, else
  `sample_ratio`. The upstream gets the proxy span (a child of the request span) in the
  extracted format (`preserve`), else `default_header_type`, plus `header_type` when named.
- `response`: `http_response_header_for_traceid` gives the client the trace id.
- `log`: for a sampled request, one span per balancer try (kind CLIENT, `<name> (balancer try N)`,
  a child of the request span, remote endpoint the peer the balancer picked for that try, tags
  `kong.balancer.try`, and `error`, `kong.balancer.state`, `http.status_code` for a failed try;
  from the try's start to its connection), then the request span (kind SERVER, named `<method>` or
  `<method> <path>`, tags `lc`, `http.method`, `http.host`, `http.path`, `http.protocol`,
  `http.status_code`, `kong.node.id`, consumer/credential, static and `Zipkin-Tags` tags;
  annotations `krs`, `krf`) and the proxy span (kind CLIENT, `<name> (proxy)`, remote endpoint
  the balancer's last pick, tags `kong.service`, `kong.route`, `peer.hostname`; annotations `kas`,
  `kaf`, `khs`, `khf`, `kbs`, `kbf`), or the same durations as tags with
  `phase_duration_flavor: tags`.

Not yet: the stream subsystem, and the aws/gcp/datadog/instana header formats (refused with a
400 naming the field rather than accepted and ignored).
"""
from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS
from meshway.plugins.bundled import _propagation
from meshway.plugins.bundled._propagation_config import FORMAT as _FORMAT, HEADER_TYPES, PropagationConfig
from meshway.plugins.bundled._propagation_config import supported as _supported
from meshway.plugins.bundled._queue import BatchQueue, QueueConfig
from meshway.plugins.bundled._trace_export import SpanBatchSender

PROTECTED_TAGS = frozenset({"error", "http.method", "http.path", "http.status_code", "kong.balancer.state",
                            "kong.balancer.try", "kong.consumer", "kong.credential", "kong.node.id", "kong.route",
                            "kong.service", "lc", "peer.hostname"})
_TAG = re.compile(r"^\s*(\S+)\s*=\s*(.*\S)\s*$")
_QUEUES: dict[tuple, BatchQueue] = {}


class StaticTag(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _not_protected(cls, value: str) -> str:
        if value in PROTECTED_TAGS:
            raise ValueError(f"must not be one of: {', '.join(sorted(PROTECTED_TAGS))}")
        return value


class ZipkinPropagation(PropagationConfig):
    """Kong's `propagation` record (default format b3 for this plugin)."""

    default_format: _FORMAT = "b3"  # type: ignore[valid-type]


class ZipkinConfig(PluginConfig):
    """Kong's zipkin schema."""

    local_service_name: str = "kong"
    http_endpoint: str | None = None
    sample_ratio: float = Field(default=0.001, ge=0, le=1)
    default_service_name: str | None = None
    include_credential: bool = True
    traceid_byte_count: Literal[8, 16] = 16
    header_type: Literal[HEADER_TYPES] = "preserve"  # type: ignore[valid-type]
    default_header_type: _FORMAT = "b3"  # type: ignore[valid-type]
    tags_header: str = "Zipkin-Tags"
    static_tags: list[StaticTag] | None = None
    http_span_name: Literal["method", "method_path"] = "method"
    connect_timeout: int = Field(default=2000, ge=0, le=2**31 - 2)
    send_timeout: int = Field(default=5000, ge=0, le=2**31 - 2)
    read_timeout: int = Field(default=5000, ge=0, le=2**31 - 2)
    http_response_header_for_traceid: str | None = None
    phase_duration_flavor: Literal["annotations", "tags"] = "annotations"
    queue: QueueConfig = Field(default_factory=QueueConfig)
    propagation: ZipkinPropagation = Field(default_factory=ZipkinPropagation)

    @field_validator("http_endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("missing host in url" if parts.scheme in ("http", "https") else "invalid url scheme")
        return value

    @field_validator("header_type", "default_header_type")
    @classmethod
    def _header_type(cls, value: str) -> str:
        return _supported(value)  # type: ignore[return-value]

    @field_validator("static_tags")
    @classmethod
    def _no_repeats(cls, value: list[StaticTag] | None) -> list[StaticTag] | None:
        seen: set[str] = set()
        for tag in value or ():
            if tag.name in seen:
                raise ValueError(f"repeated tags are not allowed: {tag.name}")
            seen.add(tag.name)
        return value


class _Trace:
    """One request's spans while it is proxied (kept in ctx.shared["zipkin"])."""

    __slots__ = ("trace_id", "span_id", "parent_id", "sampled", "name", "start_us", "access_us",
                 "proxy_id", "header_us")

    def __init__(self, trace_id: bytes, span_id: bytes, parent_id: bytes | None, sampled: bool, name: str,
                 start_us: int, access_us: int) -> None:
        self.trace_id, self.span_id, self.parent_id, self.sampled = trace_id, span_id, parent_id, sampled
        self.name, self.start_us, self.access_us = name, start_us, access_us
        self.proxy_id = os.urandom(8)
        self.header_us: int | None = None


class Zipkin(Plugin):
    """Zipkin tracing: propagation in several header formats, spans exported as Zipkin v2 JSON."""

    name = "zipkin"
    priority = 100000
    Config = ZipkinConfig
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    stream = True  # preread and stream_log: Kong's stream spans

    def __init__(self, config: ZipkinConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        p = config.propagation
        self.propagation = _propagation.resolve(config.header_type, p.default_format if _explicit(p) else
                                                config.default_header_type, p.extract, p.inject, p.clear)
        self.queue = _queue_for(config) if config.http_endpoint else None
        self.static_tags = {t.name: t.value for t in config.static_tags or ()}
        self.tags_header = config.tags_header.lower()
        self.node_id = _node_id()

    def access(self, ctx: RequestContext) -> None:
        self._trace(ctx, propagate=True)

    def response(self, ctx: RequestContext) -> None:
        trace = self._trace(ctx)
        trace.header_us = _now_us()
        if self.config.http_response_header_for_traceid:
            ctx.add_response_header(self.config.http_response_header_for_traceid, trace.trace_id.hex())

    def log(self, ctx: RequestContext) -> None:
        trace = self._trace(ctx)
        if not trace.sampled or self.queue is None:
            return
        now = _now_us()
        for span in (*self._try_spans(ctx, trace, now), self._proxy_span(ctx, trace, now),
                     self._request_span(ctx, trace, now)):
            self.queue.add(json.dumps(span, separators=(",", ":")).encode())

    # ---- stream routes (Kong's zipkin in the stream subsystem) ----------------------------

    def preread(self, ctx: RequestContext) -> None:
        """A stream session: a new trace (streams carry no trace context), `kps` now."""
        self._stream_trace(ctx)

    def stream_log(self, ctx: RequestContext) -> None:
        """Kong's stream spans: `stream` (SERVER, the session), `stream (proxy)` (CLIENT, `kps` to
        `kpf`, the upstream as remote endpoint) and one `stream (balancer try N)` per try."""
        trace = self._stream_trace(ctx)
        if not trace.sampled or self.queue is None:
            return
        now = _now_us()
        spans = self._try_spans(ctx, trace, now)
        last = ctx.tries[-1] if ctx.tries else {}
        proxy = _span(trace.trace_id, trace.proxy_id, trace.span_id, "CLIENT", "stream (proxy)", trace.access_us, now,
                      self.config.local_service_name, _service_route_tags(ctx))
        remote = _endpoint(last.get("ip"), last.get("port"),
                           (ctx.service or {}).get("name") or self.config.default_service_name)
        if remote:
            proxy["remoteEndpoint"] = remote
        kong_ms = ctx.latencies.get("kong") or 0
        preread_end = min(trace.access_us + int(kong_ms * 1000), now)  # until the upstream connection
        if self.config.phase_duration_flavor == "annotations":
            proxy["annotations"] = [{"value": "kps", "timestamp": trace.access_us},
                                    {"value": "kpf", "timestamp": preread_end}]
        else:
            proxy.setdefault("tags", {})["kong.preread.duration_ms"] = str((preread_end - trace.access_us) // 1000)
        tags = {"lc": "kong", **self.static_tags, "kong.node.id": self.node_id}
        request = _span(trace.trace_id, trace.span_id, None, "SERVER", "stream", trace.start_us, now,
                        self.config.local_service_name, tags)
        client = _endpoint(ctx.client_ip, None, self.config.default_service_name)
        if client:
            request["remoteEndpoint"] = client
        for span in (*spans, proxy, request):
            self.queue.add(json.dumps(span, separators=(",", ":")).encode())

    def _stream_trace(self, ctx: RequestContext) -> _Trace:
        trace = ctx.shared.get("zipkin")
        if trace is None:
            c = self.config
            trace = ctx.shared["zipkin"] = _Trace(os.urandom(c.traceid_byte_count), os.urandom(8), None,
                                                  random.random() < c.sample_ratio, "stream",
                                                  int(ctx.started_at * 1e6), _now_us())
        return trace

    def _trace(self, ctx: RequestContext, propagate: bool = False) -> _Trace:
        """This request's trace, made on first use (a request answered before access still logs)."""
        trace = ctx.shared.get("zipkin")
        if trace is None:
            c = self.config
            got = _propagation.extract(self.propagation, ctx.get_header, ctx.get_headers)
            span_id = parent_id = None
            if got is not None and got.reuse_span_id:
                span_id, parent_id = got.span_id, got.parent_id
            elif got is not None:
                parent_id = got.span_id
            sampled = got.sampled if got is not None and got.sampled is not None else random.random() < c.sample_ratio
            trace_id = got.trace_id if got is not None and got.trace_id else os.urandom(c.traceid_byte_count)
            if got is None or got.trace_id is None:
                span_id = parent_id = None  # the client's ids belong to no trace we continue
            name = ctx.method if c.http_span_name == "method" else f"{ctx.method} {ctx.path}"
            trace = ctx.shared["zipkin"] = _Trace(trace_id, span_id or os.urandom(8), parent_id, sampled, name,
                                                  int(ctx.started_at * 1e6), _now_us())
            if propagate:
                out = _propagation.Outgoing(trace.trace_id, trace.proxy_id, trace.span_id, sampled,
                                            debug=bool(got and got.debug), baggage=got.baggage if got else ())
                _propagation.inject(self.propagation, out, got, ctx.set_header, ctx.remove_header)
        return trace

    def _request_span(self, ctx: RequestContext, trace: _Trace, now: int) -> dict[str, Any]:
        tags: dict[str, Any] = {"lc": "kong", "http.method": ctx.method, "http.host": ctx.host, "http.path": ctx.path,
                                "http.protocol": f"HTTP/{ctx.http_version}", **self.static_tags,
                                **_request_tags(ctx.get_header(self.tags_header))}
        tags["http.status_code"] = ctx.response_status
        if ctx.consumer:
            tags["kong.consumer"] = ctx.consumer.get("id")
        if self.config.include_credential and ctx.credential:
            tags["kong.credential"] = ctx.credential.get("id")
        tags["kong.node.id"] = self.node_id
        span = _span(trace.trace_id, trace.span_id, trace.parent_id, "SERVER", trace.name, trace.start_us, now,
                     self.config.local_service_name, tags)
        remote = _endpoint(ctx.client_ip, None, self.config.default_service_name)
        if remote:
            span["remoteEndpoint"] = remote
        if self.config.phase_duration_flavor == "annotations":
            span["annotations"] = [{"value": "krs", "timestamp": trace.start_us},
                                   {"value": "krf", "timestamp": trace.access_us}]
        return span

    def _try_spans(self, ctx: RequestContext, trace: _Trace, now: int) -> list[dict[str, Any]]:
        """Kong's `<name> (balancer try N)`: one CLIENT span per try, a child of the request span,
        from the try's start to its connection (or its failure), the peer picked as remote endpoint."""
        spans, service_name = [], (ctx.service or {}).get("name") or self.config.default_service_name
        for i, (entry, connect) in enumerate(zip(ctx.tries, ctx.upstream_connect_time), 1):
            tags: dict[str, Any] = {"kong.balancer.try": i}
            if "state" in entry:  # Kong tags every try but the last; meshway any try that failed
                tags.update({"error": True, "kong.balancer.state": entry["state"], "http.status_code": entry["code"]})
            start = entry["balancer_start_ns"] // 1000
            end = min(start + (entry["balancer_latency_ns"] // 1000) + int((connect or 0) * 1e6), now)
            span = _span(trace.trace_id, os.urandom(8), trace.span_id, "CLIENT", f"{trace.name} (balancer try {i})",
                         start, end, self.config.local_service_name, {**tags, **_service_route_tags(ctx)})
            span["remoteEndpoint"] = _endpoint(entry["ip"], entry["port"], service_name)
            spans.append(span)
        return spans

    def _proxy_span(self, ctx: RequestContext, trace: _Trace, now: int) -> dict[str, Any]:
        service = ctx.service or {}
        tries = ctx.tries
        last = tries[-1] if tries else {}  # Kong: the balancer's last pick, once it made one
        tags: dict[str, Any] = {**_service_route_tags(ctx), "peer.hostname": ctx.balancer_hostname if last else None}
        kong_ms = ctx.latencies.get("kong") or 0
        access_end = min(max(trace.access_us, trace.start_us + int(kong_ms * 1000)), now)
        header = min(trace.header_us or now, now)
        if self.config.phase_duration_flavor == "tags":
            tags["kong.access.duration_ms"] = (access_end - trace.access_us) // 1000
        span = _span(trace.trace_id, trace.proxy_id, trace.span_id, "CLIENT", f"{trace.name} (proxy)",
                     trace.access_us, now, self.config.local_service_name, tags)
        remote = _endpoint(last.get("ip"), last.get("port"), service.get("name") or self.config.default_service_name)
        if remote:
            span["remoteEndpoint"] = remote
        if self.config.phase_duration_flavor == "annotations":
            span["annotations"] = [{"value": v, "timestamp": t} for v, t in (
                ("kas", trace.access_us), ("kaf", access_end), ("khs", header), ("khf", header), ("kbs", header),
                ("kbf", now))]
        return span


def _service_route_tags(ctx: RequestContext) -> dict[str, Any]:
    service, route = ctx.service or {}, ctx.route or {}
    return {"kong.service": service.get("id"), "kong.service_name": service.get("name"),
            "kong.route": route.get("id"), "kong.route_name": route.get("name")}


def _explicit(p: ZipkinPropagation) -> bool:
    return p.extract is not None or p.inject is not None or p.clear is not None


def _span(trace_id: bytes, span_id: bytes, parent_id: bytes | None, kind: str, name: str, start: int, end: int,
          local: str, tags: Mapping[str, Any]) -> dict[str, Any]:
    """A Zipkin v2 span; tag values are non-empty strings (Zipkin's API), booleans as Lua writes them."""
    span: dict[str, Any] = {"traceId": trace_id.hex(), "id": span_id.hex(), "name": name, "kind": kind,
                            "timestamp": start, "duration": max(end - start, 0),
                            "localEndpoint": {"serviceName": local}}
    if parent_id:
        span["parentId"] = parent_id.hex()
    strings = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in tags.items() if v not in (None, "")}
    if strings:
        span["tags"] = strings
    return span


def _endpoint(host: str | None, port: int | None, service_name: str | None) -> dict[str, Any] | None:
    endpoint: dict[str, Any] = {}
    if service_name:
        endpoint["serviceName"] = service_name
    if port:
        endpoint["port"] = port
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        pass
    else:
        endpoint["ipv6" if address.version == 6 else "ipv4"] = str(address)
    return endpoint or None


def _request_tags(header: str | None) -> dict[str, str]:
    """Kong's `Zipkin-Tags: name=value;name2=value2` (items that do not parse are skipped)."""
    tags: dict[str, str] = {}
    for item in (header or "").split(";"):
        m = _TAG.match(item)
        if m:
            tags[m[1]] = m[2]
    return tags


def _now_us() -> int:
    return time.time_ns() // 1000


def _queue_for(config: ZipkinConfig) -> BatchQueue:
    key = (config.http_endpoint, config.connect_timeout, config.send_timeout, config.read_timeout, config.queue)
    queue = _QUEUES.get(key)
    if queue is None:
        queue = _QUEUES[key] = BatchQueue(f"zipkin {urlsplit(config.http_endpoint).hostname}",
                                          _zipkin_sender(config), config.queue)
    return queue


def _zipkin_sender(conf: ZipkinConfig) -> SpanBatchSender:
    """Batches as one JSON array of spans; anything but a 2xx is a failed send (Kong's reporter)."""
    return SpanBatchSender(conf.http_endpoint or "", {"Content-Type": "application/json"},
                           (conf.connect_timeout, conf.send_timeout, conf.read_timeout),
                           lambda batch: b"[" + b",".join(batch) + b"]")


def _node_id() -> str | None:
    try:
        return (Path(os.environ.get("MESHWAY_PREFIX", "")) / "node_id").read_text().strip() or None
    except OSError:
        return None


PLUGIN = Zipkin
