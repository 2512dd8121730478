"""prometheus: what a scrape shows after requests: counts, histograms, bandwidth, gauges."""
from __future__ import annotations

import pytest
from ctx_for_test import CtxForTest, IndexForTest, consumer_for_test, make_plugin_for_test, run_phase_for_test

from meshway.plugins.bundled import _metrics
from meshway.plugins.bundled.prometheus import PLUGIN as Prometheus

SERVICE = {"id": "s1", "name": "billing", "host": "billing.internal"}
ROUTE = {"id": "r1", "name": "invoices", "service": {"id": "s1"}}
ALL = {"status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True}


@pytest.fixture(autouse=True)
def fresh_registry():
    _metrics.reset_for_test()
    yield
    _metrics.reset_for_test()


def plugin(**config):
    return make_plugin_for_test(Prometheus, config, IndexForTest(services=[SERVICE], routes=[ROUTE]))


def served(status=200, source="upstream", consumer=None, latencies=None, sizes=(100, 2000)):
    ctx = CtxForTest(route=ROUTE, service=SERVICE)
    ctx.response_status, ctx.response_source = status, source
    ctx.latencies = latencies or {"request": 12.0, "kong": 2.0, "proxy": 10.0}
    ctx.request_size, ctx.response_size = sizes
    if consumer:
        ctx.authenticate(consumer, {"id": "c"})
    return ctx


def scrape():
    return _metrics.render_metrics().decode()


def test_counts_by_code_and_source():
    p = plugin(**ALL)
    for ctx in (served(), served(), served(429, "exit"), served(502, "kong")):
        run_phase_for_test(p, "log", ctx)
    text = scrape()
    assert 'code="502",source="error",workspace="default",consumer=""} 1' in text
    assert 'kong_http_requests_total{service="billing",route="invoices",code="200",source="service",workspace="default",consumer=""} 2' in text
    assert 'kong_http_requests_total{service="billing",route="invoices",code="429",source="kong",workspace="default",consumer=""} 1' in text


def test_latency_histograms_use_kong_buckets():
    p = plugin(**ALL)
    run_phase_for_test(p, "log", served(latencies={"request": 12.0, "kong": 2.0, "proxy": 10.0}))
    text = scrape()
    assert 'kong_request_latency_ms_bucket{service="billing",route="invoices",workspace="default",le="10.0"} 0' in text
    assert 'kong_request_latency_ms_bucket{service="billing",route="invoices",workspace="default",le="15.0"} 1' in text
    assert 'kong_request_latency_ms_bucket{service="billing",route="invoices",workspace="default",le="+Inf"} 1' in text
    assert 'kong_upstream_latency_ms_bucket{service="billing",route="invoices",workspace="default",le="10.0"} 1' in text
    assert 'kong_kong_latency_ms_sum{service="billing",route="invoices",workspace="default"} 2' in text
    assert 'kong_request_latency_ms_count{service="billing",route="invoices",workspace="default"} 1' in text


def test_no_upstream_latency_when_no_upstream_was_called():
    run_phase_for_test(plugin(**ALL), "log", served(401, "exit", latencies={"request": 1.0, "kong": 1.0, "proxy": None}))
    assert "kong_upstream_latency_ms_count" not in scrape()


def test_bandwidth_and_per_consumer():
    p = plugin(per_consumer=True, **ALL)
    run_phase_for_test(p, "log", served(consumer=consumer_for_test("dora")))
    text = scrape()
    assert 'kong_bandwidth_bytes{service="billing",route="invoices",direction="ingress",workspace="default",consumer="dora"} 100' in text
    assert 'kong_bandwidth_bytes{service="billing",route="invoices",direction="egress",workspace="default",consumer="dora"} 2000' in text
    assert 'code="200",source="service",workspace="default",consumer="dora"} 1' in text


def test_defaults_record_nothing():
    run_phase_for_test(plugin(), "log", served())
    assert "kong_http_requests_total{" not in scrape()


def test_unknown_route_gets_its_own_series():
    ctx = served()
    ctx.route, ctx.service = None, None
    run_phase_for_test(plugin(**ALL), "log", ctx)
    assert 'kong_http_requests_total{service="",route="",code="200"' in scrape()


def test_gauges_from_proxy_sources_and_label_escaping():
    _metrics.set_health_source(lambda: [("up\"1", "10.0.0.1:80", "10.0.0.1:80", "healthy")])
    _metrics.set_connections_source(lambda: {"active": 3, "waiting": 1})
    text = scrape()
    assert 'kong_upstream_target_health{upstream="up\\"1",target="10.0.0.1:80",address="10.0.0.1:80",state="healthy",subsystem="http"} 1' in text
    assert 'state="unhealthy",subsystem="http"} 0' in text
    assert 'kong_nginx_connections_total{subsystem="http",state="active"} 3' in text
    assert 'kong_nginx_connections_total{subsystem="http",state="reading"} 0' in text  # a state not given is 0
    assert "kong_upstream_target_health" not in _metrics.render_metrics(node_wide=False).decode()  # one worker says it


def test_text_format_is_parseable_by_prometheus_client():
    from prometheus_client.parser import text_string_to_metric_families

    run_phase_for_test(plugin(**ALL), "log", served())
    names = {f.name for f in text_string_to_metric_families(scrape())}
    assert {"kong_http_requests", "kong_request_latency_ms", "kong_kong_latency_ms", "kong_memory_workers_lua_vms_bytes"} <= names
