"""The graph's edge numbers from two samples of the control plane's mesh-wide view: the caller's
and the callee's counts of one call are not added, denies of both sides are, a reset counts whole."""
from meshway.ui._edgestats import EdgeHistory, parse_mesh_metrics

VIEW = """\
# TYPE meshway_mesh_requests_total counter
meshway_mesh_requests_total{direction="inbound",source_service="client",destination_service="web",response_code="200"} {ok}
meshway_mesh_requests_total{direction="inbound",source_service="client",destination_service="web",response_code="503"} {bad}
meshway_mesh_request_errors_total{direction="inbound",source_service="client",destination_service="web"} {bad}
meshway_mesh_tcp_connections_total{direction="outbound",source_service="client",destination_service="web"} {conns}
meshway_mesh_denied_total{direction="outbound",source_service="client",destination_service="web",reason="unreachable"} {unreachable}
meshway_mesh_denied_total{direction="inbound",source_service="client",destination_service="web",reason="permission"} {permission}
meshway_mesh_request_duration_seconds_count{direction="inbound",source_service="client",destination_service="web"} 999
meshway_mesh_dataplanes_reporting{mesh="default"} 2
"""


def _view(ok=0, bad=0, conns=0, unreachable=0, permission=0):
    return (VIEW.replace("{ok}", str(ok)).replace("{bad}", str(bad)).replace("{conns}", str(conns))
            .replace("{unreachable}", str(unreachable)).replace("{permission}", str(permission)))


def test_calls_are_the_larger_side_and_denies_the_sum_of_both():
    history = EdgeHistory()
    history.add(100.0, parse_mesh_metrics(_view(ok=10, conns=2)))
    # 40 requests on the callee over 4 connections of the caller (keep-alive), 4 of them 503; 3 + 2 denied
    history.add(110.0, parse_mesh_metrics(_view(ok=46, bad=4, conns=6, unreachable=3, permission=2)))
    edges, span = history.window(60)
    edge = edges[("client", "web")]
    assert span == 10.0
    assert (edge.calls, edge.rate, edge.errors, edge.error_percent) == (40, 4.0, 4, 10.0)
    assert edge.denied == {"unreachable": 3, "permission": 2} and edge.denies == 5
    assert edge.state == "mixed"


def test_a_data_plane_that_restarted_counts_from_zero_and_an_edge_with_only_denies_is_denied():
    history = EdgeHistory()
    history.add(0.0, parse_mesh_metrics(_view(ok=500, unreachable=10)))
    history.add(5.0, parse_mesh_metrics(_view(ok=500, unreachable=14)))  # the sum dropped: counted whole
    edge = history.window(60)[0][("client", "web")]
    assert (edge.calls, edge.denies, edge.state) == (0, 4, "denied")
    history.add(10.0, parse_mesh_metrics(_view(ok=3, unreachable=14)))
    assert history.window(6)[0][("client", "web")].calls == 3  # web restarted: 3 requests since, not -497
    assert history.window(6)[0][("client", "web")].state == "allowed"


def test_one_sample_or_a_quiet_window_says_nothing():
    history = EdgeHistory()
    assert history.window(60) == ({}, 0.0)
    history.add(0.0, parse_mesh_metrics(_view(ok=5)))
    history.add(2.0, parse_mesh_metrics(_view(ok=5)))
    assert history.window(60) == ({}, 2.0)
