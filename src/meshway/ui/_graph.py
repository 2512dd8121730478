"""The mesh's service graph: services as nodes, calls as edges, each edge decided as the data
planes decide it (`meshway explain`'s pure functions over the control plane's resources).

Edges a data plane declares: its outbounds (`kuma.io/service` tag or `backendRef.name`), its
`reachableServices` / `reachableBackends`; a transparent-proxying data plane that lists none may
call any service, so it gets an edge to every other one (capped, as a page must stay readable).
Nodes sit on a circle; the SVG is computed here and needs no script. An edge links to the same
page with `?edge=SRC>DST`, which shows what `meshway explain SRC DST` prints. Pairs seen in the
data planes' counters (`_edgestats`) are edges too, declared or not: traffic is what happened.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

from meshway.mesh._explain import ExplainError, explain  # the CLI's own function (meshway.cli._explain)
from meshway.mesh._resources import services

MAX_EDGES = 300
MAX_NODES = 60
SIZE, RADIUS = 640, 250


@dataclasses.dataclass(frozen=True)
class Edge:
    """A call from one service to another, and its verdict."""

    source: str
    destination: str
    allowed: bool
    lines: tuple[str, ...]
    x1: float = 0
    y1: float = 0
    x2: float = 0
    y2: float = 0
    traffic: Any = None  # `_edgestats.EdgeTraffic` over the window shown, None when not counted
    state: str | None = None  # what the latest traffic says: allowed, denied, mixed; None when quiet

    @property
    def key(self) -> str:
        return f"{self.source}>{self.destination}"

    @property
    def verdict(self) -> str:
        """How the edge is drawn: from the latest traffic when there is some, else from the permissions."""
        return self.state or ("allowed" if self.allowed else "denied")

    @property
    def label(self) -> tuple[float, float]:
        """Where the edge's numbers go: beside its middle, on the side of its direction (A>B and B>A apart)."""
        length = math.hypot(self.x2 - self.x1, self.y2 - self.y1) or 1
        nx, ny = -(self.y2 - self.y1) / length, (self.x2 - self.x1) / length
        return round((self.x1 + self.x2) / 2 + 10 * nx, 1), round((self.y1 + self.y2) / 2 + 10 * ny + 4, 1)


def _declared(dp: dict, everyone: list[str]) -> list[str]:
    net = dp.get("networking") or {}
    out = [(o.get("tags") or {}).get("kuma.io/service") or (o.get("backendRef") or {}).get("name")
           for o in net.get("outbound") or ()]
    tp = net.get("transparentProxying") or {}
    out += list(tp.get("reachableServices") or ())
    out += [ref.get("name") for ref in ((tp.get("reachableBackends") or {}).get("refs") or ())]
    if tp and not out and tp.get("reachableServices") is None and tp.get("reachableBackends") is None:
        out = list(everyone)
    return [s for s in dict.fromkeys(out) if s]


def service_graph(section: dict[str, Any], mesh: str, seen: Iterable[tuple[str, str]] = ()
                  ) -> tuple[list[dict], list[Edge]]:
    """(nodes with x, y and their data planes' names; edges with verdicts and coordinates). `seen`:
    pairs with counted traffic, drawn first. Past MAX_NODES services only those on an edge are
    drawn (500 circles on one ring say nothing)."""
    dataplanes = section.get("dataplanes") or []
    provided = [services(dp) for dp in dataplanes]
    by_service: dict[str, list[str]] = {}
    near: dict[str, list[int]] = {}  # a service or data plane name -> the data planes explain may look at for it
    for i, (dp, names) in enumerate(zip(dataplanes, provided)):
        near.setdefault(dp["name"], []).append(i)
        for name in names:
            by_service.setdefault(name, []).append(dp["name"])
            near.setdefault(name, []).append(i)
    everyone = sorted(by_service)
    pairs = _pairs(dataplanes, provided, everyone, seen)
    names = everyone if len(everyone) <= MAX_NODES else sorted({n for pair in pairs for n in pair})[:MAX_NODES]
    nodes = [{"name": n, "dataplanes": by_service[n], **_place(i, len(names))} for i, n in enumerate(names)]
    where = {n["name"]: n for n in nodes}
    edges = []
    for src, dst in pairs:
        if src not in where or dst not in where:
            continue
        try:
            lines, allowed = explain(_around(section, near, src, dst), mesh, src, dst)
        except ExplainError as e:
            lines, allowed = [str(e)], False
        a, b = where[src], where[dst]
        edges.append(Edge(src, dst, allowed, tuple(lines), *_shorten(a["x"], a["y"], b["x"], b["y"])))
    return nodes, edges


def _pairs(dataplanes: list[dict], provided: list[list[str]], everyone: list[str],
           seen: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The first MAX_EDGES distinct (source, destination) pairs: counted ones, then declared ones
    (stopping there: a transparent proxy without a list would otherwise give every service to each)."""
    known = set(everyone)
    out: dict[tuple[str, str], None] = {}
    for src, dst in seen:
        if src != dst and src in known and dst in known:
            out[(src, dst)] = None
    for dp, sources in zip(dataplanes, provided):
        if len(out) >= MAX_EDGES:
            break
        if not sources:
            continue
        declared = _declared(dp, everyone)
        for src in sources:
            for dst in declared:
                if dst != src and dst in known:
                    out[(src, dst)] = None
    return list(out)[:MAX_EDGES]


def _around(section: dict[str, Any], near: dict[str, list[int]], src: str, dst: str) -> dict[str, Any]:
    """The section with only the data planes `meshway explain src dst` decides with: those named so
    or providing either service (in their order, so the same source is picked). The verdict on dst
    depends on dst's inbounds only, so it is the one the whole mesh gives, at the cost of ~20 data
    planes instead of 5,000 per edge."""
    dataplanes = section.get("dataplanes") or []
    picked = sorted(set(near.get(src, ())) | set(near.get(dst, ())))
    return {**section, "dataplanes": [dataplanes[i] for i in picked]}


def _place(i: int, n: int) -> dict[str, float]:
    if n == 1:
        return {"x": SIZE / 2, "y": SIZE / 2}
    angle = 2 * math.pi * i / n - math.pi / 2
    return {"x": round(SIZE / 2 + RADIUS * math.cos(angle), 1), "y": round(SIZE / 2 + RADIUS * math.sin(angle), 1)}


def _shorten(x1: float, y1: float, x2: float, y2: float, by: float = 34) -> tuple[float, float, float, float]:
    """The segment between two node circles, not their centres (the arrow head stays visible)."""
    length = math.hypot(x2 - x1, y2 - y1) or 1
    dx, dy = (x2 - x1) / length * by, (y2 - y1) / length * by
    return round(x1 + dx, 1), round(y1 + dy, 1), round(x2 - dx, 1), round(y2 - dy, 1)
