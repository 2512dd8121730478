"""Compiling a normalized snapshot into the frozen stream runtime."""
from __future__ import annotations

import dataclasses
import ssl
from typing import Any

from ..meshhooks import compile_mesh

from .. import netutil
from .._plugins import PluginSet, compile_plugins
from ..balancer import compile_balancers
from ._plugins import compile_stream_plugins
from ._router import STREAM_PROTOCOLS, StreamRouter, compile_routes
from ._targets import TLS_SCHEMES, ServiceTargets, parse_origins
from ._tls import ServerCertificates, client_context, compile_server_certificates, server_hostname

_DEFAULT_TIMEOUT_MS = 60000
# A service with this host dials each connection's own original destination (`.invalid` never
# resolves, so no real service can mean it): what a mesh data plane does for destinations
# outside the mesh, as Envoy's ORIGINAL_DST cluster.
ORIGINAL_DESTINATION = "original-destination.meshway.invalid"


@dataclasses.dataclass(frozen=True)
class StreamService:
    """A compiled service as the stream proxy dials it."""

    id: str
    name: str | None
    targets: ServiceTargets
    attempts: int
    connect_timeout: float
    idle_timeout: float
    client_tls: ssl.SSLContext | None
    server_hostname: str | None
    original_destination: bool = False  # dial where the client meant to go (a mesh's passthrough)

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclasses.dataclass(frozen=True)
class StreamRuntime:
    """Everything a stream listener needs for new connections, compiled once per snapshot."""

    router: StreamRouter
    certificates: ServerCertificates
    preread_timeout: float
    source: tuple[str, int] | None
    mesh: Any  # the mesh runtime (meshhooks.compile_mesh)
    udp_router: StreamRouter = StreamRouter(())  # routes with protocol udp, for `udp` listeners
    global_plugins: Any = None  # the global stream plugins (`_plugins.StreamPlugins`): connections without a route


def compile_stream_runtime(snapshot: dict, settings: Any, balancers: dict | None = None,
                           plugins: PluginSet | None = None) -> StreamRuntime:
    """Pure compile of the stream part of a normalized snapshot; ValueError if it cannot be.

    `balancers` is the node's `compile_balancers(snapshot)` result, shared with the HTTP proxy
    and the health checker; without it the stream runtime compiles its own. `plugins` is the
    HTTP runtime's `PluginSet` (the same instances serve both); without it, compiled here.
    """
    if balancers is None:
        balancers = compile_balancers(snapshot)
    services = _compile_services(snapshot, settings, balancers)
    if plugins is None and snapshot.get("plugins"):
        from meshway.plugins import available_plugins

        plugins = compile_plugins(snapshot, available_plugins())
    by_id = {s["id"]: s for s in snapshot.get("services") or ()}

    def route_plugins(route: dict) -> Any:
        return compile_stream_plugins(plugins, route, by_id.get((route.get("service") or {}).get("id")))

    routes = list(snapshot.get("routes") or ())
    return StreamRuntime(
        router=compile_routes(routes, services, plugins=route_plugins),
        udp_router=compile_routes(routes, services, udp=True, plugins=route_plugins),
        global_plugins=compile_stream_plugins(plugins, None, None),
        certificates=compile_server_certificates(snapshot, settings),
        preread_timeout=float(getattr(settings, "stream_preread_timeout", 0.3)),
        source=netutil.upstream_source(settings),
        mesh=compile_mesh(snapshot, settings),
    )


def _compile_services(snapshot: dict, settings: Any, balancers: dict) -> dict[str, StreamService]:
    used = {
        (r.get("service") or {}).get("id")
        for r in snapshot.get("routes") or ()
        if not STREAM_PROTOCOLS.isdisjoint(r.get("protocols") or ())
    }
    origins = parse_origins(getattr(settings, "origins", ()))
    return {
        s["id"]: _compile_service(s, snapshot, balancers, origins)
        for s in snapshot.get("services") or ()
        if s["id"] in used
    }


def _compile_service(entity: dict, snapshot: dict, balancers: dict, origins: dict) -> StreamService:
    host, scheme = entity.get("host"), entity.get("protocol") or "tcp"
    if not host:
        raise ValueError(f"service {entity.get('name') or entity['id']}: host is required")
    port = entity.get("port") or (443 if scheme in TLS_SCHEMES else 80)
    targets = ServiceTargets(scheme, host, port, balancers.get(host), origins)
    return StreamService(
        id=entity["id"], name=entity.get("name"), targets=targets,
        # A retry never re-dials a hop this connection already tried, so fewer peers mean fewer tries.
        attempts=1 + int(entity.get("retries") or 0),
        connect_timeout=_seconds(entity.get("connect_timeout")),
        idle_timeout=max(_seconds(entity.get("read_timeout")), _seconds(entity.get("write_timeout"))),
        client_tls=client_context(entity, snapshot) if targets.may_use_tls else None,
        server_hostname=server_hostname(entity["host"]),
        original_destination=host == ORIGINAL_DESTINATION,
    )


def _seconds(ms: Any) -> float:
    return (ms if ms is not None else _DEFAULT_TIMEOUT_MS) / 1000.0
