"""Kong's official Grafana dashboard works on a meshway node: every metric its queries read is
exported, with every label they filter or group by.

The dashboard (tests/data/grafana/kong-official.json, unchanged from Kong's repository) is
parsed for its PromQL: metric names, label matchers and `by (...)` labels. A real node with an
upstream, a rate limit and the prometheus plugin (every family on) serves traffic, then its
/metrics is scraped and read as Prometheus reads it (names as written: a client-library parser
would add `_total` to the counter `kong_bandwidth_bytes`).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
from tests.e2e.test_node_lifecycle import _origin_for_test

DASHBOARD = Path(__file__).resolve().parents[1] / "data" / "grafana" / "kong-official.json"
# Labels a query uses that no exporter sends: Prometheus adds `instance` when it scrapes,
# `label_replace` makes `state_value`, and Kong 3.x's own kong_bandwidth_bytes has no `type`
# (that panel's `by (type)` sums everything into one line there as here).
NOT_EXPORTED = {"instance", "state_value", "type"}
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*([^,]+?)\s*,\s*([a-zA-Z_]+)\s*\)")


def _queries(node) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "query") and isinstance(v, str) and v.strip()]
        return found + [q for v in node.values() for q in _queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in _queries(v)]
    return []


def _uses(query: str) -> list[tuple[str, set[str], list[tuple[str, str, str]]]]:
    """(metric, labels it must have, literal matchers) for every metric a query reads."""
    query = re.sub(r"#[^\n]*", "", query)  # PromQL comments
    by = {label.strip() for group in _BY.findall(query) for label in group.split(",") if label.strip()}
    out = []
    for metric, label, in _LABEL_VALUES.findall(query):
        names = re.findall(r'__name__=~"([^"]+)"', metric)
        for name in (names[0].split("|") if names else [metric]):
            out.append((name, {label}, []))
    for name, inner in _SELECTOR.findall(query):
        if name in ("label_values",):
            continue
        matchers = [m for m in _MATCHER.findall(inner) if m[0] != "__name__"]
        out.append((name, by | {m[0] for m in matchers}, matchers))
    if "label_replace(" in query:  # the health panel: a bare selector inside label_replace
        out += [(name, by, []) for name in re.findall(r"\b(kong_[a-z_]+)\{", query)]
    return out


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and not line.startswith("#"):
            out.append((match[1], dict(_LABEL.findall(match[2] or "")), float(match[3])))
    return out


def _series(text: str) -> dict[str, list[dict[str, str]]]:
    series: dict[str, list[dict[str, str]]] = {}
    for name, labels, _ in _samples(text):
        series.setdefault(name, []).append(labels)
    return series


def _admin(node, path: str, **body) -> dict:
    r = httpx.post(node.admin + path, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _scrape_after_traffic(node, origin_port: int) -> str:
    _admin(node, "/upstreams", name="origin-up")
    _admin(node, "/upstreams/origin-up/targets", target=f"127.0.0.1:{origin_port}")
    _admin(node, "/services", name="billing", host="origin-up", port=80)
    _admin(node, "/services/billing/routes", name="invoices", paths=["/invoices"])
    _admin(node, "/services/billing/plugins", name="rate-limiting", config={"minute": 1000, "policy": "local"})
    _admin(node, "/plugins", name="prometheus", config={
        "per_consumer": True, "status_code_metrics": True, "latency_metrics": True,
        "bandwidth_metrics": True, "upstream_health_metrics": True})
    deadline = time.monotonic() + 10
    while httpx.get(node.proxy + "/invoices/x").status_code != 200:
        assert time.monotonic() < deadline, "the route never answered"
        time.sleep(0.1)
    for _ in range(5):
        assert httpx.get(node.proxy + "/invoices/x").status_code == 200
    return httpx.get(node.status + "/metrics").text


def test_every_metric_and_label_of_kongs_dashboard_is_exported(node_factory):
    origin = _origin_for_test()
    node = node_factory(workers="2")
    node.start()
    try:
        text = _scrape_after_traffic(node, origin.port)
    finally:
        origin.stop()
    series = _series(text)
    queries = _queries(json.loads(DASHBOARD.read_text()))
    assert len(queries) > 40
    checked = set()
    for query in queries:
        for metric, labels, matchers in _uses(query):
            assert series.get(metric), f"{metric} (used by {query!r}) is not exported:\n{text}"
            for label in labels - NOT_EXPORTED - {"le"} if not metric.endswith("_bucket") else labels - NOT_EXPORTED:
                assert any(label in s for s in series[metric]), f"{metric} has no label {label!r} ({query!r})"
            for label, op, value in matchers:
                if label in NOT_EXPORTED or "$" in value or op in ("!~", "!="):
                    continue
                wanted = re.compile(value) if op == "=~" else None
                assert any((wanted.fullmatch(s.get(label, "")) if wanted else s.get(label) == value)
                           for s in series[metric]), f"no {metric}{{{label}{op}{value!r}}} ({query!r})"
            checked.add(metric)
    assert {"kong_http_requests_total", "kong_kong_latency_ms_bucket", "kong_upstream_latency_ms_bucket",
            "kong_request_latency_ms_bucket", "kong_bandwidth_bytes", "kong_upstream_target_health",
            "kong_nginx_connections_total", "kong_memory_lua_shared_dict_bytes",
            "kong_memory_lua_shared_dict_total_bytes", "kong_memory_workers_lua_vms_bytes"} <= checked


def test_counts_are_the_nodes_and_node_wide_gauges_appear_once(node_factory):
    origin = _origin_for_test()
    node = node_factory(workers="2")
    node.start()
    try:
        text = _scrape_after_traffic(node, origin.port)
    finally:
        origin.stop()
    samples = _samples(text)

    def value(name, **labels):
        return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items()))

    assert value("kong_http_requests_total", service="billing", route="invoices", code="200",
                 workspace="default", source="service") >= 5
    assert value("kong_nginx_connections_total", state="total") >= 6  # requests served, both workers
    assert value("kong_upstream_target_health", upstream="origin-up", state="healthchecks_off") == 1
    assert value("kong_datastore_reachable") == 1
    assert value("kong_node_info") == 1
    assert len([n for n, _, _ in samples if n == "kong_memory_workers_lua_vms_bytes"]) == 2  # one per worker
    assert value("kong_bandwidth_bytes", direction="egress", route="invoices") > 0
    assert not any(name.startswith("meshway_http") for name, _, _ in samples)  # Kong's names, not aliases
    prometheus = [p for p in httpx.get(node.admin + "/plugins").json()["data"] if p["name"] == "prometheus"][0]
    r = httpx.patch(node.admin + f"/plugins/{prometheus['id']}", json={"config": {"upstream_health_metrics": False}})
    assert r.status_code == 200, r.text
    assert "kong_upstream_target_health{" not in httpx.get(node.status + "/metrics").text  # Kong's flag, honoured
