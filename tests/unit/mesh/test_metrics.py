"""The per-service metrics' pure part: series, histogram buckets, bounds, and what a record counts as."""
from __future__ import annotations

import types

from prometheus_client.parser import text_string_to_metric_families

from meshway.mesh import _metrics
from meshway.mesh._metrics import MAX_SERIES, MeshMetrics, observe_exchange, observe_session


def _view(**kw):
    base = dict(route_services={"outbound-0": ("outbound", "web"), "inbound-0-http": ("inbound", "web")},
                inbound_services={("10.0.0.1", 8080): "web"}, unreachable={("10.0.0.9", 80): ("db", True)},
                self_service="frontend", mesh_name="default")
    return types.SimpleNamespace(**{**base, **kw})


def _record(**kw):
    base = dict(reason="client_closed", destination="10.0.0.1:8080", route="outbound-0", peer=None,
                up_bytes=10, down_bytes=20)
    return types.SimpleNamespace(**{**base, **kw})


def _samples(m: MeshMetrics) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(m.render()) for s in f.samples}


def test_sessions_count_as_connections_errors_or_denials():
    m = MeshMetrics()
    view = _view()
    observe_session(view, _record(), 0.1, m)
    observe_session(view, _record(reason="connect_failed"), 0.1, m)
    observe_session(view, _record(reason="mesh_unreachable", destination="10.0.0.9:80", route="-"), 0.0, m)
    m.remember_peer("spiffe://meshway/node/1", "frontend")
    observe_session(view, _record(reason="mesh_denied", peer="spiffe://meshway/node/1"), 0.0, m)
    observe_session(view, _record(route="passthrough"), 0.1, m)  # not between mesh services: nothing
    got = _samples(m)
    out = (("destination_service", "web"), ("direction", "outbound"), ("source_service", "frontend"))
    assert got[("meshway_mesh_tcp_connections_total", out)] == 2
    assert got[("meshway_mesh_tcp_sent_bytes_total", out)] == 20
    assert got[("meshway_mesh_request_errors_total", out)] == 1
    assert got[("meshway_mesh_denied_total", (("destination_service", "db"), ("direction", "outbound"),
                                              ("reason", "unreachable"), ("source_service", "frontend")))] == 1
    assert got[("meshway_mesh_denied_total", (("destination_service", "web"), ("direction", "inbound"),
                                              ("reason", "permission"), ("source_service", "frontend")))] == 1


def test_requests_histogram_and_the_bound_on_series():
    m = MeshMetrics()
    view = _view()
    for status, took in ((200, 0.004), (200, 0.2), (503, 3.0)):
        ex = types.SimpleNamespace(target=types.SimpleNamespace(route={"name": "inbound-0-http"}), status=status,
                                   t0=100.0, server=types.SimpleNamespace(mesh_peer=None))
        observe_exchange(view, ex, 100.0 + took, m)
    got = _samples(m)
    key = (("destination_service", "web"), ("direction", "inbound"), ("source_service", "frontend"))
    assert got[("meshway_mesh_requests_total", key[:2] + (("response_code", "200"),) + key[2:])] == 2
    assert got[("meshway_mesh_request_errors_total", key)] == 1
    assert got[("meshway_mesh_request_duration_seconds_bucket", key[:2] + (("le", "0.005"),) + key[2:])] == 1
    assert got[("meshway_mesh_request_duration_seconds_bucket", key[:2] + (("le", "0.25"),) + key[2:])] == 2
    assert got[("meshway_mesh_request_duration_seconds_bucket", key[:2] + (("le", "+Inf"),) + key[2:])] == 3
    assert got[("meshway_mesh_request_duration_seconds_count", key)] == 3
    for i in range(MAX_SERIES + 10):
        m.add("meshway_mesh_tcp_connections_total", ("inbound", f"s{i}", "web"))
    assert len(m.counters["meshway_mesh_tcp_connections_total"]) == MAX_SERIES
    assert "meshway_mesh_series_dropped_total 10" in m.render()


def test_a_label_value_is_escaped_and_nothing_renders_empty():
    m = MeshMetrics()
    assert m.render() == ""
    m.add("meshway_mesh_tcp_connections_total", ("inbound", 'we"ird\\', "web"))
    assert 'source_service="we\\"ird\\\\"' in m.render()
    assert _metrics.first_service("default", ("spiffe://meshway/node/x", "spiffe://default/web")) == "web"
