"""The graph decides each edge on the data planes near it only: the same verdict and explanation
as `meshway explain` over the whole mesh, for every kind of edge."""
from meshway.mesh._explain import explain
from meshway.ui._graph import MAX_EDGES, service_graph


def _dp(name, service, **networking):
    return {"type": "Dataplane", "mesh": "m", "name": name, "networking": {
        "address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": service, "team": service[:1]}}],
        **networking}}


SECTION = {
    "meshes": [{"type": "Mesh", "name": "m", "mtls": {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "builtin"}]}}],
    "dataplanes": [
        _dp("web-1", "web"), _dp("web-2", "web"), _dp("api-1", "api"), _dp("db-1", "db"),
        _dp("front-1", "front", outbound=[{"port": 1, "tags": {"kuma.io/service": "web"}},
                                          {"port": 2, "tags": {"kuma.io/service": "db"}}]),
        _dp("tp-1", "tp", transparentProxying={"redirectPortInbound": 15006, "redirectPortOutbound": 15001}),
        _dp("listed-1", "listed", transparentProxying={"redirectPortInbound": 15006, "redirectPortOutbound": 15001,
                                                       "reachableServices": ["api"]}),
        _dp("labels-1", "labels", transparentProxying={"redirectPortInbound": 15006, "redirectPortOutbound": 15001,
                                                       "reachableBackends": {"refs": [{"kind": "MeshService",
                                                                                       "labels": {"team": "d"}}]}}),
        _dp("web", "api"),  # a data plane named as another service: explain picks it for "web" by name
    ],
    "policies": [
        {"type": "MeshTrafficPermission", "mesh": "m", "name": "allow",
         "spec": {"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}},
        {"type": "MeshTrafficPermission", "mesh": "m", "name": "deny-db",
         "spec": {"targetRef": {"kind": "MeshService", "name": "db"},
                  "from": [{"targetRef": {"kind": "MeshService", "name": "front"}, "default": {"action": "Deny"}}]}},
    ],
}


def test_every_edge_is_decided_as_explain_decides_it_over_the_whole_mesh():
    nodes, edges = service_graph(SECTION, "m")
    assert {("front", "web"), ("front", "db"), ("tp", "db"), ("listed", "api")} <= \
        {(e.source, e.destination) for e in edges}
    verdicts = {}
    for edge in edges:
        lines, allowed = explain(SECTION, "m", edge.source, edge.destination)
        assert (edge.allowed, edge.lines) == (allowed, tuple(lines)), edge.key
        verdicts[edge.key] = allowed
    assert verdicts["front>db"] is False and verdicts["front>web"] is True and verdicts["tp>db"] is True


def test_transparent_proxies_without_a_list_stop_at_the_edge_cap():
    many = {**SECTION, "dataplanes": [_dp(f"tp-{i}", f"svc-{i}", transparentProxying={"redirectPortInbound": 1})
                                      for i in range(400)]}
    _, edges = service_graph(many, "m")
    assert 0 < len(edges) <= MAX_EDGES
