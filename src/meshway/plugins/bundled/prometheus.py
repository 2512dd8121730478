"""prometheus: records request counts, latencies and bandwidth into `_metrics` in `log`."""
from __future__ import annotations

from typing import Any, Mapping

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS
from meshway.plugins.bundled import _metrics

# Kong's `source` label: who produced the response ("upstream" and "kong" are the engine's
# spellings of "service" and "error").
SOURCES = {"service": "service", "upstream": "service", "exit": "kong", "error": "error", "kong": "error"}


class PrometheusConfig(PluginConfig):
    """Kong's prometheus schema."""

    per_consumer: bool = False
    status_code_metrics: bool = False
    latency_metrics: bool = False
    bandwidth_metrics: bool = False
    upstream_health_metrics: bool = False
    # Kong 3.6+'s AI-gateway and Wasm metric families: accepted, so that `deck dump` output of
    # a current Kong loads; meshway runs neither AI plugins nor Wasm filters, so they stay empty.
    ai_metrics: bool = False
    wasm_metrics: bool = False


class Prometheus(Plugin):
    """Exposes Kong-compatible metrics (rendered by `_metrics.render_metrics`)."""

    name = "prometheus"
    priority = 13
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    stream = True
    Config = PrometheusConfig

    def __init__(self, config: PrometheusConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        services = {s["id"]: s for s in index.entities("services")}
        # Series per route, created now so a request only bumps numbers.
        self.by_route = {r["id"]: _metrics.route_series(*_names(services.get((r.get("service") or {}).get("id")), r))
                         for r in index.entities("routes")}
        self.enabled = config.status_code_metrics or config.latency_metrics or config.bandwidth_metrics
        self.per_consumer = config.per_consumer
        self.status_codes = config.status_code_metrics
        self.latency = config.latency_metrics
        self.bandwidth = config.bandwidth_metrics
        if not self.enabled:
            self.log = None  # nothing to record: the engine skips the log phase (and its set-up)

    def log(self, ctx: RequestContext) -> None:
        if not self.enabled:
            return
        route = ctx.route
        series = self.by_route.get(route["id"]) if route else None
        if series is None:
            series = _metrics.route_series(*_names(ctx.service, route))
        consumer = _consumer_label(ctx.consumer) if self.per_consumer else ""
        if self.status_codes:
            series.count(ctx.response_status or ctx.status or 0, SOURCES.get(ctx.response_source or "", "error"), consumer)
        if self.latency:
            latencies = ctx.latencies
            series.observe(latencies.get("request"), latencies.get("proxy"), latencies.get("kong"))
        if self.bandwidth:
            series.add_bytes(consumer, ctx.request_size, ctx.response_size)


    def stream_log(self, ctx: RequestContext) -> None:
        """A stream session, as Kong's exporter in the stream subsystem: `kong_stream_sessions_total`
        (status, source), `kong_session_duration_ms` and `kong_kong_latency_ms`; a session without a
        route is not recorded, and no bandwidth (Kong's stream handler never sets it)."""
        route = ctx.route
        if route is None:
            return
        series = self.by_route.get(route["id"]) or _metrics.route_series(*_names(ctx.service, route))
        if self.status_codes:
            series.count_session(ctx.status or 0, "service" if ctx.response_source == "service" else "kong")
        if self.latency:
            latencies = ctx.latencies
            series.session_duration.observe(latencies["session"])
            series.proxy_latency.observe(latencies["kong"])


def _names(service: Mapping[str, Any] | None, route: Mapping[str, Any] | None) -> tuple[str, str]:
    """Kong's labels: service name (or host), route name (or id); "" when absent."""
    svc = (service.get("name") or service.get("host") or "") if service else ""
    rt = (route.get("name") or route.get("id") or "") if route else ""
    return svc, rt


def _consumer_label(consumer: Mapping[str, Any] | None) -> str:
    if not consumer:
        return ""
    return consumer.get("username") or consumer.get("custom_id") or consumer.get("id") or ""


PLUGIN = Prometheus
