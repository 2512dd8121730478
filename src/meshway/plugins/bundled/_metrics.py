"""The process-wide Prometheus registry the prometheus plugin records into, in Kong 3.x's shape.

Theory of operation: recording is on the hot path, so it is plain Python arithmetic, not
prometheus_client (whose locks and label lookups cost several microseconds per request).
Series are grouped per (service, route): a plugin instance gets each group once, at init, and
per request only bumps integers in it. `render_metrics()` formats everything in the text
exposition format. Gauges the proxy owns (target health, connections, memory) are read at
render time from sources the proxy registers with `set_health_source` / `set_connections_source`.

Names and labels are Kong's (kong/plugins/prometheus/exporter.lua), so Kong's official Grafana
dashboard and alerts written for Kong work unchanged: `kong_http_requests_total`,
`kong_kong_latency_ms`, `kong_upstream_latency_ms`, `kong_request_latency_ms`,
`kong_bandwidth_bytes`, `kong_upstream_target_health`, `kong_nginx_connections_total`,
`kong_nginx_requests_total`, `kong_memory_workers_lua_vms_bytes` (a worker's resident memory:
its Python heap is what Kong's Lua VM is). Names only appear when a scrape renders them: the
recording path is the same whatever they are. Node-wide families (datastore, node info,
shared memory) are rendered once by the node: see `_metrics_node`.
"""
from __future__ import annotations

import os
from bisect import bisect_left
from typing import Any, Callable, Iterable

# Kong's latency buckets, milliseconds.
BUCKETS = (1, 2, 5, 7, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300, 400, 500,
           1000, 2000, 5000, 10000, 30000, 60000)
HEALTH_STATES = ("healthchecks_off", "healthy", "unhealthy", "dns_error")
WORKSPACE = "default"  # Kong's label; meshway has the one workspace
# nginx's connection states, as Kong's kong_nginx_connections_total reports them.
CONNECTION_STATES = ("accepted", "active", "handled", "reading", "total", "waiting", "writing")


class Histogram:
    """Counts per bucket (the last one is +Inf), sum and count."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.sum += value


class RouteSeries:
    """Every series of one (service, route) pair."""

    __slots__ = ("service", "route", "requests", "request_latency", "upstream_latency", "proxy_latency", "bandwidth",
                 "sessions", "session_duration")

    def __init__(self, service: str, route: str) -> None:
        self.service, self.route = service, route
        self.requests: dict[tuple[int, str, str], int] = {}  # (code, source, consumer)
        self.request_latency, self.upstream_latency, self.proxy_latency = Histogram(), Histogram(), Histogram()
        self.bandwidth: dict[str, list[int]] = {}  # consumer -> [ingress, egress]
        # Stream routes (Kong's stream subsystem): sessions by (status, source), their durations (ms).
        self.sessions: dict[tuple[int, str], int] = {}
        self.session_duration = Histogram()

    def count(self, code: int, source: str, consumer: str) -> None:
        key = (code, source, consumer)
        self.requests[key] = self.requests.get(key, 0) + 1

    def observe(self, total: float | None, upstream: float | None, gateway: float | None) -> None:
        """One request's latencies (ms): total, upstream (None or < 0: no upstream), gateway."""
        if total is not None:
            h = self.request_latency
            h.counts[bisect_left(BUCKETS, total)] += 1
            h.sum += total
        if upstream is not None and upstream >= 0:
            h = self.upstream_latency
            h.counts[bisect_left(BUCKETS, upstream)] += 1
            h.sum += upstream
        if gateway is not None:
            h = self.proxy_latency
            h.counts[bisect_left(BUCKETS, gateway)] += 1
            h.sum += gateway

    def count_session(self, code: int, source: str) -> None:
        key = (code, source)
        self.sessions[key] = self.sessions.get(key, 0) + 1

    def add_bytes(self, consumer: str, ingress: int, egress: int) -> None:
        both = self.bandwidth.get(consumer)
        if both is None:
            both = self.bandwidth[consumer] = [0, 0]
        both[0] += ingress
        both[1] += egress


_SERIES: dict[tuple[str, str], RouteSeries] = {}
_health_source: Callable[[], Iterable[tuple[str, str, str, str]]] | None = None
_connections_source: Callable[[], dict[str, int]] | None = None


def route_series(service: str, route: str) -> RouteSeries:
    """The series of (service, route), created on first use and kept across config reloads."""
    found = _SERIES.get((service, route))
    if found is None:
        found = _SERIES[(service, route)] = RouteSeries(service, route)
    return found


def set_health_source(source: Callable[[], Iterable[tuple[str, str, str, str]]] | None) -> None:
    """Register a function giving (upstream, target, address, state) per target, state in HEALTH_STATES."""
    global _health_source
    _health_source = source


def set_connections_source(source: Callable[[], dict[str, int]] | None) -> None:
    """Register a function giving counts by state (CONNECTION_STATES; `total` is requests served)."""
    global _connections_source
    _connections_source = source


def reset_for_test() -> None:
    _SERIES.clear()
    set_health_source(None)
    set_connections_source(None)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: Any) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _header(lines: list[str], name: str, kind: str, text: str) -> None:
    lines.append(f"# HELP {name} {text}")
    lines.append(f"# TYPE {name} {kind}")


def _render_requests(lines: list[str], series: list[RouteSeries]) -> None:
    _header(lines, "kong_http_requests_total", "counter", "HTTP status codes per consumer/service/route in Kong")
    for s in series:
        for (code, source, consumer), n in s.requests.items():
            labels = _labels(service=s.service, route=s.route, code=code, source=source, workspace=WORKSPACE,
                             consumer=consumer)
            lines.append(f"kong_http_requests_total{labels} {n}")


def _render_sessions(lines: list[str], series: list[RouteSeries]) -> None:
    """Kong's stream families, once a stream route recorded a session (an HTTP-only node shows none)."""
    streams = [s for s in series if s.sessions or s.session_duration.sum]
    if not streams:
        return
    _header(lines, "kong_stream_sessions_total", "counter", "Stream status codes per service/route in Kong")
    for s in streams:
        for (code, source), n in s.sessions.items():
            labels = _labels(service=s.service, route=s.route, code=code, source=source, workspace=WORKSPACE)
            lines.append(f"kong_stream_sessions_total{labels} {n}")
    _render_histogram(lines, "kong_session_duration_ms",
                      "latency incurred in stream session for each service/route in Kong", streams, "session_duration")


def _render_histogram(lines: list[str], name: str, text: str, series: list[RouteSeries], attr: str) -> None:
    _header(lines, name, "histogram", text)
    for s in series:
        h: Histogram = getattr(s, attr)
        total = sum(h.counts)
        if not total:
            continue
        base = f'service="{_escape(s.service)}",route="{_escape(s.route)}",workspace="{WORKSPACE}"'
        running = 0
        for bound, n in zip((*BUCKETS, "+Inf"), h.counts):
            running += n
            lines.append(f'{name}_bucket{{{base},le="{_le(bound)}"}} {running}')
        lines.append(f"{name}_sum{{{base}}} {h.sum:g}")
        lines.append(f"{name}_count{{{base}}} {total}")


def _le(bound: Any) -> str:
    # Kong pads bucket bounds ("00001.0") so they sort as strings; we keep plain numbers.
    return bound if isinstance(bound, str) else f"{float(bound)}"


def _render_bandwidth(lines: list[str], series: list[RouteSeries]) -> None:
    _header(lines, "kong_bandwidth_bytes", "counter", "Total bandwidth (ingress/egress) throughput in bytes")
    for s in series:
        for consumer, counts in s.bandwidth.items():
            for direction, n in zip(("ingress", "egress"), counts):
                labels = _labels(service=s.service, route=s.route, direction=direction, workspace=WORKSPACE,
                                 consumer=consumer)
                lines.append(f"kong_bandwidth_bytes{labels} {n}")


def _render_health(lines: list[str]) -> None:
    if _health_source is None:
        return
    _header(lines, "kong_upstream_target_health", "gauge",
            "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, "
            "value is 1 when state is populated.")
    for upstream, target, address, current in _health_source():
        for state in HEALTH_STATES:
            labels = _labels(upstream=upstream, target=target, address=address, state=state, subsystem="http")
            lines.append(f"kong_upstream_target_health{labels} {int(state == current)}")


def _render_connections(lines: list[str]) -> None:
    if _connections_source is None:
        return
    counts = _connections_source()
    _header(lines, "kong_nginx_connections_total", "gauge", "Number of connections by subsystem")
    for state in CONNECTION_STATES:
        lines.append(f"kong_nginx_connections_total{_labels(subsystem='http', state=state)} {counts.get(state, 0)}")
    _header(lines, "kong_nginx_requests_total", "gauge", "Number of requests total")
    lines.append(f"kong_nginx_requests_total{_labels(subsystem='http')} {counts.get('total', 0)}")


def _render_memory(lines: list[str]) -> None:
    _header(lines, "kong_memory_workers_lua_vms_bytes", "gauge", "Allocated bytes in worker Lua VM")
    labels = _labels(pid=os.getpid(), kong_subsystem="http")
    lines.append(f"kong_memory_workers_lua_vms_bytes{labels} {_resident_bytes()}")


def _resident_bytes() -> int:
    """This process's resident memory (Linux /proc); 0 where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def render_metrics(node_wide: bool = True) -> bytes:
    """This process's metrics in the Prometheus text exposition format (version 0.0.4).

    A node sums its workers' texts (node/_metrics): `node_wide` is False for all workers but
    one, so that a gauge of state they share (target health) is not counted once per worker.
    """
    series = list(_SERIES.values())
    lines: list[str] = []
    _render_requests(lines, series)
    _render_histogram(lines, "kong_request_latency_ms",
                      "Total latency incurred during requests for each service/route in Kong", series, "request_latency")
    _render_histogram(lines, "kong_upstream_latency_ms",
                      "Latency added by upstream response for each service/route in Kong", series, "upstream_latency")
    _render_histogram(lines, "kong_kong_latency_ms",
                      "Latency added by Kong and enabled plugins for each service/route in Kong", series, "proxy_latency")
    _render_bandwidth(lines, series)
    _render_sessions(lines, series)
    if node_wide:
        _render_health(lines)
    _render_connections(lines)
    _render_memory(lines)
    return ("\n".join(lines) + "\n").encode()
