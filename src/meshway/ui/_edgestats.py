"""Live numbers on the service graph's edges: request rate, error rate and denies per pair of
services, from the data planes' own counters as the control plane sums them for the mesh
(`GET /meshes/{mesh}/metrics`, `meshway.mesh._meshstats`): no Prometheus server needed.

Theory: each `dp run` data plane counts the calls it relays with `direction`, `source_service`
and `destination_service` labels, and reports them to the control plane every 5 s when they
changed. A call between two services is seen twice: by the caller (`outbound`) and by the callee
(`inbound`), and not always as the same thing (an explicit outbound relays TCP: one connection on
the caller may carry many HTTP requests on the callee). So, per edge and per window:
- calls = the larger of the two sides' calls (requests + TCP connections), errors likewise;
- denies = the sum of both sides' denials: a call the caller's data plane refused (unreachable)
  never reaches the callee, and one the callee refused (permission, mtls) is not a deny on the
  caller, so the two never count the same call.
Counters only grow, except when a data plane restarts (its series start again from zero, and the
control plane's sum drops): a counter found smaller than before counts whole, as Prometheus'
`rate()` reads a reset. Samples are taken when the mesh page (or its 2 s refresh) asks, at most
one a second, and kept 10 minutes; the window shown is the last minute of watching.
"""
from __future__ import annotations

import collections
import dataclasses
import re
from typing import Any

_SAMPLE = re.compile(r"^(meshway_mesh_\w+)\{(.*)\}\s+(\S+)\s*$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_CALLS = ("meshway_mesh_requests_total", "meshway_mesh_tcp_connections_total")
KEEP_SECONDS, MIN_INTERVAL, WINDOW = 600, 1.0, 60
Counters = dict[tuple[str, str, str, str], float]  # (direction, source, destination, what) -> count


def parse_mesh_metrics(text: str) -> Counters:
    """{(direction, source, destination, "calls" | "errors" | "denied:<reason>"): count}."""
    out: Counters = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name = match[1]
        if name in _CALLS:
            what = "calls"
        elif name == "meshway_mesh_request_errors_total":
            what = "errors"
        elif name == "meshway_mesh_denied_total":
            what = "denied:"
        else:
            continue
        labels = dict(_LABEL.findall(match[2]))
        if what == "denied:":
            what += labels.get("reason", "")
        key = (labels.get("direction", ""), labels.get("source_service", ""), labels.get("destination_service", ""), what)
        out[key] = out.get(key, 0.0) + float(match[3])
    return out


@dataclasses.dataclass
class EdgeTraffic:
    """One edge's numbers over a window."""

    calls: int = 0
    errors: int = 0
    denied: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> count
    rate: float = 0.0  # calls per second

    @property
    def denies(self) -> int:
        return sum(self.denied.values())

    @property
    def error_percent(self) -> float:
        return round(100 * self.errors / self.calls, 1) if self.calls else 0.0

    @property
    def state(self) -> str | None:
        """What the traffic says about the edge: `denied` (only denies), `mixed`, `allowed`, or None (quiet)."""
        if self.denies and not self.calls:
            return "denied"
        if self.denies:
            return "mixed"
        return "allowed" if self.calls else None


def edge_traffic(new: Counters, old: Counters, span: float) -> dict[tuple[str, str], EdgeTraffic]:
    """Per (source, destination): the window's calls, errors, denies and call rate."""
    sides: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for key, value in new.items():
        before = old.get(key, 0.0)
        delta = value - before if value >= before else value  # a data plane restarted: its counter began again
        if delta <= 0:
            continue
        direction, source, destination, what = key
        side = sides.setdefault((source, destination), {}).setdefault(direction, {})
        side[what] = side.get(what, 0.0) + delta
    out = {}
    for pair, by_direction in sides.items():
        inbound, outbound = by_direction.get("inbound", {}), by_direction.get("outbound", {})
        calls = max(inbound.get("calls", 0.0), outbound.get("calls", 0.0))
        denied: dict[str, int] = {}
        for side in (inbound, outbound):
            for what, count in side.items():
                if what.startswith("denied:"):
                    denied[what[7:]] = denied.get(what[7:], 0) + int(count)
        out[pair] = EdgeTraffic(calls=int(calls), errors=int(max(inbound.get("errors", 0.0), outbound.get("errors", 0.0))),
                                denied=denied, rate=round(calls / span, 2) if span > 0 else 0.0)
    return out


class EdgeHistory:
    """Samples of one mesh's summed counters: (monotonic time, Counters)."""

    def __init__(self) -> None:
        self.samples: collections.deque = collections.deque()

    def due(self, now: float) -> bool:
        return not self.samples or now - self.samples[-1][0] >= MIN_INTERVAL

    def add(self, now: float, counters: Counters) -> None:
        self.samples.append((now, counters))
        while self.samples and self.samples[0][0] < now - KEEP_SECONDS:
            self.samples.popleft()

    def window(self, seconds: float = WINDOW) -> tuple[dict[tuple[str, str], EdgeTraffic], float]:
        """Each edge's numbers over the last `seconds` watched (as much as was sampled), and the span."""
        if len(self.samples) < 2:
            return {}, 0.0
        t1, new = self.samples[-1]
        t0, old = next(((t, s) for t, s in self.samples if t >= t1 - seconds - 0.5), self.samples[0])
        return edge_traffic(new, old, t1 - t0), t1 - t0


class MeshHistories:
    """One history per mesh name, bounded (a mesh deleted and others created do not grow it forever)."""

    MAX_MESHES = 100

    def __init__(self) -> None:
        self._by_mesh: collections.OrderedDict[str, EdgeHistory] = collections.OrderedDict()

    def get(self, mesh: str) -> EdgeHistory:
        history = self._by_mesh.pop(mesh, None) or EdgeHistory()
        self._by_mesh[mesh] = history
        while len(self._by_mesh) > self.MAX_MESHES:
            self._by_mesh.popitem(last=False)
        return history


def sampled(histories: MeshHistories, mesh: str, now: float, text: Any) -> EdgeHistory:
    """The mesh's history, with a new sample from `text` (the view's Prometheus text) when one is due."""
    history = histories.get(mesh)
    if isinstance(text, str) and history.due(now):
        history.add(now, parse_mesh_metrics(text))
    return history
