"""Which plugins a stream route runs, decided when the config is compiled: scopes as for HTTP, the
entity's `protocols` against the session's protocol, and nothing at all for a route without any."""
from __future__ import annotations

from meshway.settings import load_settings
from meshway.proxy.stream import compile_stream_runtime
from meshway.proxy.stream._plugins import StreamContext


def _snapshot(*plugins):
    service = {"id": "s", "name": "s", "protocol": "tcp", "host": "127.0.0.1", "port": 9}
    routes = [{"id": f"r-{p}", "name": f"r-{p}", "protocols": [p], "service": {"id": "s"},
               "destinations": [{"port": 1000 + i}]} for i, p in enumerate(("tcp", "tls", "udp"))]
    snap = {k: [] for k in ("upstreams", "targets", "certificates", "snis", "ca_certificates")}
    return {**snap, "services": [service], "routes": routes, "plugins": list(plugins)}


def _runtime(*plugins):
    runtime = compile_stream_runtime(_snapshot(*plugins), load_settings(env={}))
    routes = {r.name: r for r in (*runtime.router.routes, *runtime.udp_router.routes)}
    return runtime, routes


def test_routes_without_stream_plugins_compile_to_none():
    # HTTP-only plugins, and a log plugin left on its default (HTTP) protocols: nothing per connection
    runtime, routes = _runtime({"id": "a", "name": "key-auth", "protocols": ["http", "https"]},
                               {"id": "b", "name": "file-log", "config": {"path": "/tmp/x"},
                                "protocols": ["grpc", "grpcs", "http", "https"]})
    assert runtime.global_plugins is None and all(r.plugins is None for r in routes.values())


def test_phases_per_protocol_and_scope():
    runtime, routes = _runtime(
        {"id": "a", "name": "ip-restriction", "config": {"deny": ["10.0.0.0/8"]}, "protocols": ["tcp", "udp"],
         "service": {"id": "s"}},
        {"id": "b", "name": "file-log", "config": {"path": "/tmp/x"}, "protocols": ["tls"], "route": {"id": "r-tls"}})
    assert (routes["r-tcp"].plugins.preread, routes["r-tcp"].plugins.log) == ({"tcp", "udp"}, frozenset())
    assert routes["r-udp"].plugins.preread == {"tcp", "udp"}
    assert routes["r-tls"].plugins.preread == {"tcp", "udp"} and routes["r-tls"].plugins.log == {"tls"}
    assert runtime.global_plugins is None  # both plugins are scoped


def test_a_preread_exit_is_the_session_status():
    _, routes = _runtime({"id": "a", "name": "ip-restriction", "config": {"deny": ["10.0.0.0/8"], "status": 451},
                          "protocols": ["tcp"]})
    plugins = routes["r-tcp"].plugins
    refused = StreamContext(plugins, "tcp", "10.1.2.3", 1000, 0.0, 0.0)
    refused.preread()
    assert refused.exited == 451
    allowed = StreamContext(plugins, "tcp", "192.0.2.1", 1000, 0.0, 0.0)
    allowed.preread()
    assert allowed.exited is None
    # tls is not in its protocols: a tls session is not checked at all
    other = StreamContext(plugins, "tls", "10.1.2.3", 1000, 0.0, 0.0)
    other.preread()
    assert other.exited is None
