"""The stream proxy's mesh decisions and log fields, without sockets."""
from __future__ import annotations

from meshway.proxy.stream._log import ConnectionRecord
from meshway.proxy.stream._router import choose_mesh_route, compile_routes


def _routes(*entities):
    return compile_routes(list(entities), {"s": object()}).routes


def _route(rid, protocols, **fields):
    return {"id": rid, "name": rid, "protocols": protocols, "service": {"id": "s"},
            "destinations": [{"ip": "127.0.0.5", "port": 19443}], **fields}


def test_a_mesh_connection_takes_a_tls_or_tcp_route_that_needs_no_client_sni():
    routes = _routes(_route("by-sni", ["tls"], snis=["b.example"]), _route("tls", ["tls"]), _route("tcp", ["tcp"]))
    assert routes[0].name == "by-sni"  # the SNI route has priority for ordinary clients...
    assert choose_mesh_route(routes).name == "tls"  # ...but the mesh hop carries no client SNI
    assert choose_mesh_route(_routes(_route("tcp", ["tcp"]))).name == "tcp"
    assert choose_mesh_route(_routes(_route("by-sni", ["tls"], snis=["b.example"]))) is None


def test_the_log_line_says_whether_the_hop_was_mesh_and_who_the_peer_was():
    plain = ConnectionRecord(reason="client_closed").line(0.5)
    mesh = ConnectionRecord(mtls=True, peer="spiffe://meshway/node/n1", reason="upstream_closed").line(0.5)
    assert "mtls=no peer=-" in plain
    assert "mtls=yes peer=spiffe://meshway/node/n1" in mesh and "close=upstream_closed" in mesh
