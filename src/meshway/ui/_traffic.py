"""Live traffic per service and route, from the node's own counters (the prometheus plugin's
`kong_http_requests_total` and `kong_request_latency_ms` on the Admin API's `/metrics`, summed
over the workers): no Prometheus server needed.

On a control plane (which proxies nothing) the counters are its hybrid data planes' own, as they
report them (`GET /clustering/metrics`, `meshway.cluster._traffic`), each labelled with its
`node_id`: the page sums them per service and route.

Theory: counters only grow, so a rate is the difference of two samples over their time apart,
and a latency percentile is computed on the difference of two cumulative histograms, as
Prometheus' `histogram_quantile(rate(...))` does (linear within a bucket). Samples are taken when
the page (or its 2 s refresh) asks, at most one a second, and the last 10 minutes are kept, so
the windows shown are "the last minute" and "the last 5 minutes" of watching. A counter found
smaller than before (a data plane or worker restarted) counts whole, as Prometheus' `rate()` does.
"""
from __future__ import annotations

import collections
import dataclasses
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_SAMPLE = re.compile(r"^(kong_http_requests_total|kong_request_latency_ms_bucket)\{(.*)\}\s+(\S+)\s*$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
KEEP_SECONDS, MIN_INTERVAL = 600, 1.0
WINDOWS = (60, 300)
QUANTILES = (0.5, 0.95, 0.99)


@dataclasses.dataclass
class Series:
    """One (service, route)'s counters in one sample."""

    classes: dict[str, float] = dataclasses.field(default_factory=dict)  # "2xx" -> requests
    buckets: dict[float, float] = dataclasses.field(default_factory=dict)  # le -> cumulative count


def parse_metrics(text: str) -> dict[tuple[str, str, str], Series]:
    """{(node_id or "", service, route): Series}."""
    out: dict[tuple[str, str, str], Series] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match[1], dict(_LABEL.findall(match[2])), float(match[3])
        series = out.setdefault((labels.get("node_id", ""), labels.get("service", ""), labels.get("route", "")), Series())
        if name == "kong_http_requests_total":
            cls = f"{labels.get('code', '0')[:1]}xx"
            series.classes[cls] = series.classes.get(cls, 0.0) + value
        else:
            le = float("inf") if labels.get("le") == "+Inf" else float(labels.get("le", "inf"))
            series.buckets[le] = series.buckets.get(le, 0.0) + value
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank, lower, below = q * buckets[bounds[-1]], 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if le == float("inf"):
                return lower  # above the last finite bound: that bound is all that is known
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 0)
        lower, below = le, count
    return lower


class TrafficHistory:
    """Samples of the node's counters: (monotonic time, {(service, route): Series})."""

    def __init__(self) -> None:
        self.samples: collections.deque = collections.deque()

    def add(self, now: float, series: dict[tuple[str, str], Series]) -> None:
        self.samples.append((now, series))
        while self.samples and self.samples[0][0] < now - KEEP_SECONDS:
            self.samples.popleft()

    def due(self, now: float) -> bool:
        return not self.samples or now - self.samples[-1][0] >= MIN_INTERVAL

    def rows(self, window: float) -> tuple[list[dict], float]:
        """Per (service, route): rate, counts per status class, error ratio, percentiles over the
        window (as much of it as was sampled); and the seconds actually covered."""
        if len(self.samples) < 2:
            return [], 0.0
        t1, new = self.samples[-1]
        t0, old = next(((t, s) for t, s in self.samples if t >= t1 - window - 0.5), self.samples[0])
        span = t1 - t0
        sums: dict[tuple[str, str], list] = {}  # (service, route) -> [window's Series, requests ever]
        for (node, service, route), series in new.items():
            entry = sums.setdefault((service, route), [Series(), 0.0])
            _add(entry[0], _delta(series, old.get((node, service, route))))
            entry[1] += sum(series.classes.values())
        rows = [_row(key, delta, ever, span) for key, (delta, ever) in sums.items()]
        return sorted((r for r in rows if r["total"] > 0 or r["ever"]), key=lambda r: (-r["rate"], r["service"], r["route"])), span


def _delta(new: Series, old: Series | None) -> Series:
    """What one node counted between two samples (a series that went down restarted from zero)."""
    old = old or Series()
    if any(n < old.classes.get(c, 0.0) for c, n in new.classes.items()):
        old = Series()
    return Series({c: n - old.classes.get(c, 0.0) for c, n in new.classes.items()},
                  {le: n - old.buckets.get(le, 0.0) for le, n in new.buckets.items()})


def _add(into: Series, more: Series) -> None:
    for c, n in more.classes.items():
        into.classes[c] = into.classes.get(c, 0.0) + n
    for le, n in more.buckets.items():
        into.buckets[le] = into.buckets.get(le, 0.0) + n


def _row(key: tuple[str, str], delta: Series, ever: float, span: float) -> dict[str, Any]:
    classes = {c: delta.classes.get(c, 0.0) for c in ("2xx", "3xx", "4xx", "5xx")}
    total = sum(delta.classes.values())
    return {"service": key[0], "route": key[1], "total": int(total), "ever": int(ever),
            "rate": round(total / span, 2) if span > 0 else 0.0,
            "classes": {c: int(n) for c, n in classes.items()},
            "errors": round(100 * classes["5xx"] / total, 1) if total else 0.0,
            "latency": {q: quantile(q, delta.buckets) for q in QUANTILES}}


def routes(gui: Any) -> list[Route]:
    history = TrafficHistory()
    # a control plane proxies nothing: its data planes' counters, as they report them
    source = "/clustering/metrics" if gui.settings.role == "control_plane" else "/metrics"

    async def page(request: Request) -> Response:
        token = gui.token(request)
        now = time.monotonic()
        if history.due(now):
            answer = await gui.admin.call_text("GET", source, token)
            if answer.status == 401:
                return gui.login_redirect(request)
            if answer.ok:
                history.add(now, parse_metrics(answer.body))
        window = int(request.query_params.get("window", "60")) if request.query_params.get("window", "60") in ("60", "300") else 60
        rows, span = history.rows(window)
        counted = any(s for _, sample in history.samples for s in sample)
        reporting = len({key[0] for key in history.samples[-1][1]}) if history.samples else 0
        context = dict(title="Traffic", rows=rows, span=span, window=window, windows=WINDOWS, counted=counted,
                       reporting=reporting)
        if request.query_params.get("fragment") == "rows":
            return gui.render(request, "traffic_rows.html", **context)
        return gui.render(request, "traffic.html", **context)

    return [Route("/traffic", page, methods=["GET"])]
