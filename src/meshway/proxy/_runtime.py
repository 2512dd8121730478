"""Snapshot -> `Runtime`: everything a worker needs per request, compiled once and frozen.

A `Runtime` is replaced whole when a config arrives; a connection keeps a reference to the
runtime its request started with, so requests in flight finish on it.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Mapping

from meshway.plugins import available_plugins

from .meshhooks import MESH_OFF

from ._plugins import EMPTY_CHAIN, WS_EMPTY_CHAIN, Chain, PluginSet, compile_plugins
from ._router import Router, compile_router
from ._tls import ServerTLS, client_context
from .balancer import compile_balancers

log = logging.getLogger("meshway.proxy")

__all__ = ["Runtime", "ServiceTarget", "RouteTarget", "compile_runtime", "empty_runtime", "origin_context",
           "origin_of", "resolve_secrets"]

# Kong Enterprise's WebSocket protocols: the handshake is an HTTP request, proxied as such.
_WS_AS_HTTP = {"ws": "http", "wss": "https"}
_WS_PROTOCOLS = frozenset(_WS_AS_HTTP)
_DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443, "tcp": 80, "tls": 443}


class _Fixed:
    """A service whose host is not an upstream: one peer, the host itself."""

    __slots__ = ("peer",)

    def __init__(self, host: str, port: int):
        from .balancer import Peer

        self.peer = Peer(host=host, port=port, target=f"{host}:{port}", hostname=host)

    def select(self, request: Any = None, *, exclude: Any = frozenset()) -> Any:
        return None if exclude and self.peer in exclude else self.peer

    def on_connect(self, peer: Any) -> None:
        pass

    def on_release(self, peer: Any) -> None:
        pass

    def report(self, peer: Any, **kw: Any) -> None:
        pass


class ServiceTarget:
    """A compiled service: where and how to connect, its timeouts (seconds) and retries."""

    __slots__ = ("entity", "id", "scheme", "host", "port", "path", "retries", "connect_timeout",
                 "read_timeout", "write_timeout", "balancer", "hash_request", "ssl", "host_header",
                 "pool_key", "fixed", "fixed_key", "tracked", "direct")

    def __init__(self, service: Mapping[str, Any], balancers: Mapping[str, Any], ssl_for: Any):
        self.entity = service
        self.id = service["id"]
        protocol = service.get("protocol") or "http"
        self.scheme = _WS_AS_HTTP.get(protocol, protocol)
        self.host = service.get("host") or ""
        self.port = int(service.get("port") or _DEFAULT_PORTS.get(self.scheme, 80))
        self.path = service.get("path")
        self.retries = int(service.get("retries") if service.get("retries") is not None else 5)
        self.connect_timeout = (service.get("connect_timeout") or 60000) / 1000
        self.read_timeout = (service.get("read_timeout") or 60000) / 1000
        self.write_timeout = (service.get("write_timeout") or 60000) / 1000
        balancer = balancers.get(self.host)
        self.host_header = (balancer.upstream.get("host_header") if balancer is not None else None) or None
        self.balancer = balancer if balancer is not None else _Fixed(self.host, self.port)
        self.fixed = balancer is None  # no balancer bookkeeping to do per request
        self.hash_request = getattr(balancer, "_key", None) is not None
        self.ssl = ssl_for(service) if self.scheme in ("https", "grpcs") else None
        self.pool_key = self.id if self.ssl is not None else None
        self.fixed_key = (self.host, self.port, self.pool_key) if self.fixed else None
        # The balancer keeps per-request state (Balancer.tracked): on_connect, on_release, report
        self.tracked = balancer is not None and balancer.tracked
        # A request without plugins takes its peer in `Exchange.start` (no hash, no bookkeeping)
        self.direct = self.fixed or not (self.tracked or self.hash_request)


class RouteTarget:
    """What the router attaches to a route: its service, plugin chain and proxy options."""

    __slots__ = ("route", "id", "service", "chain", "strip_path", "preserve_host", "path_handling",
                 "http_ok", "redirect_status", "buffers_request", "host_cache", "last_host", "contextual")

    def __init__(self, route: Mapping[str, Any], service: ServiceTarget | None, chain: Chain):
        self.route = route
        self.id = route["id"]
        self.service = service
        self.chain = chain
        self.strip_path = route.get("strip_path", True) is not False
        self.preserve_host = bool(route.get("preserve_host"))
        self.path_handling = route.get("path_handling") or "v0"
        protocols = set(route.get("protocols") or ("http", "https"))
        self.http_ok = bool(protocols & {"http", "grpc", "ws"})
        self.redirect_status = int(route.get("https_redirect_status_code") or 426)
        self.buffers_request = chain.buffers_request
        # A request needs a Context: plugins to run, or a balancer that hashes on the request
        # (a header, a cookie, the client's address...: `_tries.pick` hands it the Context)
        self.contextual = bool(chain.phases) or (service is not None and service.hash_request)
        self.host_cache: dict = {}  # peer -> Host header bytes (filled on first use)
        self.last_host: tuple = (None, b"")  # the last (peer, Host) used: the codec's fast path


class Runtime:
    """One compiled config: router, services, balancers, plugin chains, TLS contexts."""

    def __init__(self, *, hash: str | None, router: Router, plugins: PluginSet | None, services: dict,
                 balancers: dict, tls: ServerTLS | None, compile_ms: float = 0.0, snapshot: Mapping | None = None):
        self.hash = hash
        self.router = router
        self.plugins = plugins
        self.rewrite = plugins.rewrite if plugins else ()
        self.global_chain = plugins.global_chain if plugins else EMPTY_CHAIN
        self.services = services
        self.balancers = balancers
        self.tls = tls
        self.compile_ms = compile_ms
        self.snapshot = snapshot
        self.decisions: dict = {}  # routing answers by request values (see _pipeline.decide)
        self.h1_routes: dict = {}  # HTTP/1.1 codec's routing answers by listener, then raw request line
        self.h2_routes: dict = {}  # HTTP/2 streams' routing answers, or False off their short path (http2/_stream)
        self.mesh = MESH_OFF  # the worker sets the compiled mesh view (meshway.mesh.compile_mesh)
        self.mesh_dials = False  # may a hop be upgraded to mesh mTLS? (set with `mesh`; else never asked)
        self.origins: dict = {}  # node setting `origins`: (scheme, host, port) -> where to dial instead
        self.origin_tls: Any = None  # the client context for origins that turn a plain hop into TLS


def _ssl_factory(snapshot: Mapping[str, Any]):
    cas = {c["id"]: c["cert"] for c in snapshot.get("ca_certificates") or ()}
    certs = {c["id"]: c for c in snapshot.get("certificates") or ()}

    def build(service: Mapping[str, Any]) -> Any:
        ca_ids = service.get("ca_certificates") or ()
        missing = [i for i in ca_ids if i not in cas]
        if missing:
            raise ValueError(f"service {service.get('name') or service['id']}: unknown ca_certificates {missing}")
        cc = service.get("client_certificate")
        cert = certs.get(cc["id"]) if isinstance(cc, Mapping) else None
        return client_context(service, [cas[i] for i in ca_ids], cert)

    return build


def compile_runtime(snapshot: Mapping[str, Any], settings: Any = None, *, hash: str | None = None,
                    plugins: Mapping[str, type] | None = None) -> Runtime:
    """Compile a normalized snapshot (docs/snapshot.md); raises ValueError naming what is wrong."""
    started = time.perf_counter()
    snapshot = resolve_secrets(snapshot)  # `{vault://...}` references: once per config
    balancers = compile_balancers(dict(snapshot))
    make_ssl = _ssl_factory(snapshot)
    services = {s["id"]: ServiceTarget(s, balancers, make_ssl) for s in snapshot.get("services") or ()
                if s.get("enabled", True) is not False}
    pset = compile_plugins(snapshot, available_plugins() if plugins is None else plugins)
    has_plugins = bool(pset.names)

    def attach(route: Mapping[str, Any]) -> RouteTarget:
        sid = (route.get("service") or {}).get("id")
        service = services.get(sid) if sid else None
        # Kong Enterprise's ws/wss routes carry WebSocket handshakes only (see _plugins' rules)
        websocket = bool(_WS_PROTOCOLS.intersection(route.get("protocols") or ()))
        if has_plugins:
            chain = pset.chain_for(route["id"], sid, websocket)
        else:
            chain = WS_EMPTY_CHAIN if websocket else EMPTY_CHAIN
        return RouteTarget(route, service, chain)

    http_routes = [r for r in snapshot.get("routes") or ()
                   if set(r.get("protocols") or ("http", "https")) & {"http", "https", "grpc", "grpcs", "ws", "wss"}]
    router = compile_router(http_routes, attach)
    tls = ServerTLS(snapshot, default_pair(settings), certificate=pset.certificate,
                    tls_listeners=any(spec.ssl for spec in getattr(settings, "proxy_listen", ())))
    ms = (time.perf_counter() - started) * 1000
    runtime = Runtime(hash=hash, router=router, plugins=pset if has_plugins else None, services=services,
                      balancers=balancers, tls=tls, compile_ms=ms, snapshot=snapshot)
    _compile_origins(runtime, settings)
    return runtime


def check_config(snapshot: Mapping[str, Any], settings: Any = None) -> None:
    """Raise the ValueError a worker's compile would reject `snapshot` with (HTTP and stream
    parts), without a worker: the node runs it on a write before the store commits it."""
    from .stream import compile_stream_runtime

    snapshot = resolve_secrets(snapshot)
    runtime = compile_runtime(snapshot, settings)
    # the stream side adds its routes and services; its certificates are the ones ServerTLS just
    # loaded (and it would load each again, uncached: ~3 ms a certificate on every write)
    if any(_STREAM_PROTOCOLS.intersection(r.get("protocols") or ()) for r in snapshot.get("routes") or ()):
        compile_stream_runtime({**snapshot, "certificates": [], "snis": []}, settings, runtime.balancers,
                               plugins=runtime.plugins)


_STREAM_PROTOCOLS = frozenset({"tcp", "tls", "tls_passthrough", "udp"})


# The collections that may hold `{vault://...}` references (meshway.model's REFERENCEABLE and
# plugin configs; a unit test keeps them in step). A snapshot without any skips the model import.
SECRET_COLLECTIONS = ("certificates", "keyauth_credentials", "jwt_secrets", "plugins")


def resolve_secrets(snapshot: Mapping[str, Any]) -> Mapping[str, Any]:
    text = json.dumps([snapshot.get(c) for c in SECRET_COLLECTIONS])
    if '"{vault://' not in text:
        return snapshot
    from meshway.model import resolve_snapshot  # only a config with references pays for the model

    return resolve_snapshot(snapshot, on_error=_unresolved)


def _unresolved(collection: str, entity_id: str | None, message: str) -> None:
    log.error("%s %s: %s; that value is unset in this config", collection, entity_id, message)


def _compile_origins(runtime: Runtime, settings: Any) -> None:
    """Kong's `origins = http://a:1=https://b:2`: this node dials b:2 (TLS) for a service's a:1."""
    pairs = getattr(settings, "origins", ())
    if not pairs:  # most nodes: no need to load the stream package (~0.5 MiB of a worker's memory)
        return
    from .stream._targets import parse_origins

    runtime.origins = parse_origins(pairs)
    if any(dst[0] in _TLS_SCHEMES for dst in runtime.origins.values()):
        runtime.origin_tls = client_context({}, [], None)


_TLS_SCHEMES = frozenset({"https", "grpcs", "tls", "wss"})  # as the stream proxy reads `origins`


def origin_of(runtime: Runtime, service: ServiceTarget, peer: Any) -> tuple[str, str, int] | None:
    """Where the node's `origins` send a chosen peer: (scheme, host, port), or None to dial it."""
    origins = runtime.origins
    return origins.get((service.scheme, peer.host, peer.port)) if origins else None


def origin_context(runtime: Runtime, service: ServiceTarget, origin: tuple[str, str, int]) -> Any:
    """The client TLS context for a hop `origins` rewrote: None when its scheme is plain."""
    if origin[0] not in _TLS_SCHEMES:
        return None
    return service.ssl or runtime.origin_tls


def default_pair(settings: Any) -> tuple[str, str] | None:
    """The default certificate: settings ssl_cert/ssl_cert_key, else the prefix's generated pair."""
    if settings is None:
        return None
    if settings.ssl_cert and settings.ssl_cert_key:
        return (str(settings.path(settings.ssl_cert)), str(settings.path(settings.ssl_cert_key)))
    ssl_dir = settings.prefix_path / "ssl"
    return (str(ssl_dir / "default.crt"), str(ssl_dir / "default.key"))


def empty_runtime(settings: Any = None) -> Runtime:
    """The runtime before any config: every request gets 404 no route."""
    return Runtime(hash=None, router=compile_router(()), plugins=None, services={}, balancers={},
                   tls=ServerTLS({}, default_pair(settings)))
