"""Per-service metrics of a data plane: requests, errors, denials and latency between services.

Rules:
- Every series has `direction` (`inbound`: calls this data plane received for its own services;
  `outbound`: calls its own app made), `source_service` and `destination_service` (`kuma.io/service`
  values), as Istio's standard metrics have source and destination labels:
  - `meshway_mesh_requests_total{..., response_code}` and `meshway_mesh_request_duration_seconds`
    (histogram) for calls on the HTTP path (`kuma.io/protocol: http`), one per request;
  - `meshway_mesh_tcp_connections_total`, `meshway_mesh_tcp_sent_bytes_total`,
    `meshway_mesh_tcp_received_bytes_total` for calls relayed as TCP, one per connection
    (bytes as the calling side sent and received them);
  - `meshway_mesh_request_errors_total`: HTTP answers 5xx, TCP connections ended by a failure to
    reach the other side (connect failed, its TLS failed, no endpoint, reset, internal error);
  - `meshway_mesh_denied_total{..., reason}`: `permission` (a MeshTrafficPermission denied the
    caller: HTTP 403, TCP closed), `unreachable` (the caller's own data plane refused a service
    outside its reachable services), `mtls` (no valid mesh certificate where one is required);
  - `meshway_mesh_shadow_denied_total`: calls AllowWithShadowDeny let through that Deny would refuse.
- A caller's service is read from its certificate (`spiffe://<mesh>/<service>`, the first one),
  `unknown` when it has none (a plain client in PERMISSIVE mode); a call to ourselves from our own
  app has our service as source.
- Counted in each worker's memory, summed over the workers when scraped (`node._metrics`).
  Label values come from the mesh's own certificates and configuration, so they are bounded by
  the mesh's size; still, a family holds at most `MAX_SERIES` label sets (more are dropped and
  counted in `meshway_mesh_series_dropped_total`), so no peer can grow a worker without bound.
- The work per request is a few dict operations, done only on data planes with a mesh.
"""
from __future__ import annotations

import bisect
from typing import Any

MAX_SERIES = 5000
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LABELS = ("direction", "source_service", "destination_service")
_PEERS_MAX = 4096
UNKNOWN = "unknown"

_HELP = {
    "meshway_mesh_requests_total": ("counter", "HTTP requests between mesh services"),
    "meshway_mesh_request_duration_seconds": ("histogram", "HTTP request duration between mesh services"),
    "meshway_mesh_request_errors_total": ("counter", "HTTP 5xx answers and failed TCP connections between mesh services"),
    "meshway_mesh_denied_total": ("counter", "calls refused by the mesh (permission, unreachable, mtls)"),
    "meshway_mesh_shadow_denied_total": ("counter", "calls AllowWithShadowDeny let through that Deny would refuse"),
    "meshway_mesh_tcp_connections_total": ("counter", "TCP connections between mesh services"),
    "meshway_mesh_tcp_sent_bytes_total": ("counter", "bytes the caller sent on TCP connections between mesh services"),
    "meshway_mesh_tcp_received_bytes_total": ("counter", "bytes the caller received on TCP connections between mesh services"),
}


class MeshMetrics:
    """One worker's counters: family -> {label values: count}, histograms as [buckets..., sum, count]."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple, float]] = {name: {} for name, (kind, _) in _HELP.items()
                                                         if kind == "counter"}
        self.durations: dict[tuple, list[float]] = {}
        self.dropped = 0
        self.peers: dict[str, str] = {}  # a peer sidecar's meshway SPIFFE id -> its first service

    def add(self, family: str, key: tuple, amount: float = 1) -> None:
        series = self.counters[family]
        if key in series:
            series[key] += amount
        elif len(series) < MAX_SERIES:
            series[key] = amount
        else:
            self.dropped += 1

    def observe(self, key: tuple, seconds: float) -> None:
        cells = self.durations.get(key)
        if cells is None:
            if len(self.durations) >= MAX_SERIES:
                self.dropped += 1
                return
            cells = self.durations[key] = [0.0] * (len(BUCKETS) + 2)
        cells[bisect.bisect_left(BUCKETS, seconds)] += 1  # le is inclusive: 0.005 counts in le="0.005"
        cells[-2] += seconds
        cells[-1] += 1

    def remember_peer(self, peer: str | None, service: str | None) -> None:
        if peer is None or service is None:
            return
        if len(self.peers) >= _PEERS_MAX and peer not in self.peers:
            self.peers.clear()
        self.peers[peer] = service

    def render(self) -> str:
        """Prometheus text; labels always in the same order, so workers' texts merge by line."""
        out: list[str] = []
        for name, (kind, text) in _HELP.items():
            rows = self.durations if kind == "histogram" else self.counters[name]
            if not rows:
                continue
            out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for key, value in sorted(rows.items()):
                labels = _labels(key, name)
                if kind == "histogram":
                    out += _histogram_lines(name, labels, value)
                else:
                    out.append(f"{name}{{{labels}}} {_number(value)}")
        if self.dropped:
            out += ["# TYPE meshway_mesh_series_dropped_total counter", f"meshway_mesh_series_dropped_total {self.dropped}"]
        return "\n".join(out) + "\n" if out else ""


def _labels(key: tuple, family: str) -> str:
    names = LABELS + (("response_code",) if family == "meshway_mesh_requests_total" else
                      ("reason",) if family == "meshway_mesh_denied_total" else ())
    return ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, key))


def _histogram_lines(name: str, labels: str, cells: list[float]) -> list[str]:
    lines, running = [], 0.0
    for bound, count in zip(BUCKETS, cells):
        running += count
        lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {_number(running)}')
    lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {_number(cells[-1])}')
    lines += [f"{name}_sum{{{labels}}} {cells[-2]!r}", f"{name}_count{{{labels}}} {_number(cells[-1])}"]
    return lines


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def first_service(mesh: str, uris: tuple[str, ...]) -> str | None:
    """The first `spiffe://<mesh>/<service>` of a certificate's URIs (Kuma's SAN for a service)."""
    prefix = f"spiffe://{mesh}/"
    return next((u[len(prefix):] for u in uris if u.startswith(prefix) and len(u) > len(prefix)), None)


METRICS = MeshMetrics()  # this worker's


def render_metrics() -> str:
    return METRICS.render()


# ---- what a worker saw, as series ------------------------------------------------------------------
_FAILED = frozenset(("connect_failed", "upstream_tls_failed", "no_upstream", "upstream_reset", "internal_error"))
_DENIED = {"mesh_denied": "permission", "mesh_unreachable": "unreachable", "mesh_refused": "mtls"}


def _split(hostport: str) -> tuple[str, int] | None:
    host, _, port = hostport.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else None


def observe_session(view: Any, record: Any, duration: float, m: MeshMetrics = METRICS) -> None:
    """One stream connection ended (`proxy.stream` record): a TCP call between services, or a refusal."""
    reason = record.reason
    denied = _DENIED.get(reason)
    dst = _split(record.destination) if record.destination != "-" else None
    if denied == "unreachable":
        service = (view.unreachable.get(dst) or (UNKNOWN,))[0] if dst else UNKNOWN
        m.add("meshway_mesh_denied_total", ("outbound", view.self_service, service, denied))
        return
    if denied is not None:
        service = view.inbound_services.get(dst) if dst else None
        if service is not None:
            source = m.peers.get(record.peer, UNKNOWN) if record.peer else UNKNOWN
            m.add("meshway_mesh_denied_total", ("inbound", source, service, denied))
        return
    found = view.route_services.get(record.route)
    if found is None:
        return  # not a call between mesh services (passthrough, a hybrid node's own routes)
    direction, service = found
    source = view.self_service if direction == "outbound" else \
        (m.peers.get(record.peer, UNKNOWN) if record.peer else UNKNOWN)
    key = (direction, source, service)
    m.add("meshway_mesh_tcp_connections_total", key)
    m.add("meshway_mesh_tcp_sent_bytes_total", key, record.up_bytes)
    m.add("meshway_mesh_tcp_received_bytes_total", key, record.down_bytes)
    if reason in _FAILED:
        m.add("meshway_mesh_request_errors_total", key)


def observe_exchange(view: Any, ex: Any, now: float, m: MeshMetrics = METRICS) -> None:
    """One HTTP request on a mesh route ended: a request between services."""
    target = getattr(ex, "target", None)
    route = getattr(target, "route", None)
    found = view.route_services.get(route.get("name")) if route else None
    if found is None:
        return
    direction, service = found
    if direction == "outbound":
        source = view.self_service
    else:
        peer = getattr(ex.server, "mesh_peer", None)
        source = m.peers.get(peer, UNKNOWN) if peer else view.self_service  # no peer: our own app
    key = (direction, source, service)
    status = ex.status
    m.add("meshway_mesh_requests_total", (*key, status))
    m.observe(key, now - ex.t0)
    if status >= 500:
        m.add("meshway_mesh_request_errors_total", key)


def observe_shadow(view: Any, uris: tuple[str, ...], ip: str, port: int, m: MeshMetrics = METRICS) -> None:
    service = view.inbound_services.get((ip, port))
    if service is not None:
        m.add("meshway_mesh_shadow_denied_total", ("inbound", first_service(view.mesh_name, uris) or UNKNOWN, service))
