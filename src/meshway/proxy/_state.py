"""`Worker`: the state one proxy worker process shares between its connections.

Holds the current runtime (swapped whole), the upstream pool, the access log, the settings
the hot path reads (as plain attributes), the listeners and the health checker.
"""
from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import socket
import sys
import time
from typing import Any, Callable

from meshway import __version__
from meshway.settings import Settings

from . import _core, _tlsimpl
from ._accept import Acceptor
from ._accesslog import AccessLog
from ._headers import keep_underscores
from ._http1 import H1Server
from ._memory import MemoryKeeper
from ._runtime import Runtime, compile_runtime, empty_runtime, resolve_secrets
from ._tls import compiled_listener, listener_context, serves_tls
from ._upstream import Pool

__all__ = ["Worker", "set_h2_handoff"]

log = logging.getLogger("meshway.proxy")

# The HTTP/2 codec registers here: called with (h1_protocol, transport) when ALPN chose h2.
_H2_HANDOFF: list[Callable[[Any, Any], None] | None] = [None]


def set_h2_handoff(handoff: Callable[[Any, Any], None] | None) -> None:
    """Install the HTTP/2 connection handler (`handoff(h1_protocol, transport)`)."""
    _H2_HANDOFF[0] = handoff


class Worker:
    """One worker's shared state and control operations."""

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: Settings, worker_id: int = 0):
        self.loop = loop
        self.settings = settings
        self.worker_id = worker_id
        gc.set_threshold(20_000, 20, 50)  # per-request garbage is freed by refcount; see apply_config
        self.tls_core: Any = None  # the compiled TLS transport, or None: chosen for the first TLS listener
        self._tls_chosen = False
        if any(spec.ssl for spec in settings.proxy_listen):  # a bad `tls_impl` stops the worker at start
            self._choose_tls()
        self.runtime: Runtime = empty_runtime(settings)
        self.header_limit = settings.large_client_header_buffers
        self.client_header_timeout = settings.client_header_timeout
        self.client_body_timeout = settings.client_body_timeout
        self.keepalive_timeout = settings.keepalive_timeout
        self.max_body = settings.client_max_body_size
        self.max_headers = settings.max_request_headers
        keep_underscores(settings.underscores_in_headers)
        _core.select(settings.http1_impl)
        tokens = set(settings.headers)
        self.via = f"1.1 meshway/{__version__}".encode() if "server_tokens" in tokens else None
        self.latency_tokens = "latency_tokens" in tokens
        self._trusted = [ipaddress.ip_network(t, strict=False) for t in settings.trusted_ips if t != "unix:"]
        self.pool = Pool(loop, settings.upstream_keepalive_pool_size, settings.upstream_keepalive_max_requests,
                         settings.upstream_keepalive_idle_timeout, self._source())
        log_path = settings.proxy_access_log
        self.access = AccessLog(loop, None if log_path == "off" else str(_ensure_dir(settings.path(log_path))))
        self.connections: set[Any] = set()
        self.servers: list[Any] = []
        self.h2_handoff = _H2_HANDOFF[0]
        self.control: Any = None
        self.checker: Any = None
        self.stream_runtime: Any = None
        self.requests = 0
        self.accepted = 0  # client connections accepted by the HTTP listeners (metrics)
        self.memory: MemoryKeeper | None = None  # started with the first listener

    def prepare_tls(self) -> None:
        """Choose the TLS transport now (a standalone worker with `--listen ... ssl`, before its
        snapshot compiles, so the config builds its default-certificate contexts as on a node)."""
        if not self._tls_chosen:
            self._choose_tls()

    def _choose_tls(self) -> None:
        # only with TLS listeners: the choice checks OpenSSL (an SSL_CTX) and probes kernel TLS
        self.tls_core = _tlsimpl.select(self.settings.tls_impl)
        self._tls_chosen = True
        serves_tls()

    def _source(self) -> tuple[str, int] | None:
        from .netutil import upstream_source

        return upstream_source(self.settings)

    def trusted(self, ip: str) -> bool:
        if not self._trusted:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self._trusted)

    @staticmethod
    def original_destination(sock: Any) -> tuple[str, int] | None:
        from .netutil import original_destination

        try:
            return original_destination(sock)
        except OSError:
            return None

    # -- listeners
    async def start_listeners(self, listeners: list[dict[str, Any]]) -> None:
        """Serve the sockets the master passed (the boot frame)."""
        socks = []
        for item in listeners:
            kind = item.get("kind", "proxy")
            specs = self.settings.proxy_listen if kind == "proxy" else self.settings.stream_listen
            spec = specs[int(item.get("index", 0))]
            sock = socket.socket(fileno=int(item["fd"]))
            sock.setblocking(False)
            socks.append((sock, spec, kind))
        await self.serve_sockets(socks)

    async def serve_sockets(self, socks: list[tuple[socket.socket, Any, str]]) -> None:
        if self.memory is None:
            self.memory = MemoryKeeper(self.loop, self.connections.__len__)
        for sock, spec, kind in socks:
            if kind == "stream":
                await self._serve_stream(sock, spec)
                continue
            scheme = "https" if spec.ssl else "http"
            mesh = spec.transparent and self.settings.mesh_mtls != "off"  # a sidecar's inbound side
            get_mesh = (lambda: self.runtime.mesh) if mesh else None
            tls = None
            if spec.ssl and not self._tls_chosen:  # a standalone worker's --listen
                self._choose_tls()
            if spec.ssl and get_mesh is None and self.tls_core is not None:  # mesh mTLS: the ssl path
                ctx, choose = compiled_listener(self.tls_core, lambda: self.runtime.tls, spec.http2)
                tls = (self.tls_core, choose)
            else:
                ctx = listener_context(lambda: self.runtime.tls, spec.http2, get_mesh) if spec.ssl else None
            port = sock.getsockname()[1]
            transparent = spec.transparent
            h2c = spec.http2 and not spec.ssl  # prior-knowledge HTTP/2 on a plain `http2` listener

            def factory(scheme=scheme, port=port, transparent=transparent, h2c=h2c) -> H1Server:
                return H1Server(self, scheme, port, transparent, h2c)

            if mesh and not spec.ssl:
                from .meshhooks import sniffing_factory

                factory = sniffing_factory(factory, get_mesh, self.original_destination, self.client_header_timeout)

            self.servers.append(Acceptor(self.loop, sock, factory, ssl=ctx,
                                         ssl_handshake_timeout=self.client_header_timeout if ctx else None, tls=tls))

    async def _serve_stream(self, sock: socket.socket, spec: Any) -> None:
        try:
            from .stream import compile_stream_runtime, start_stream_listener
        except ImportError as e:  # pragma: no cover
            log.error("stream listener %s not served: %s", spec, e)
            return
        if self.stream_runtime is None:
            self.stream_runtime = compile_stream_runtime({}, self.settings)
        if getattr(spec, "udp", False):
            from .stream._udp import start_udp_listener

            self.servers.append(await start_udp_listener(sock, spec, lambda: self.stream_runtime, self._stream_access))
            return
        port = sock.getsockname()[1]
        self.servers.append(await start_stream_listener(sock, spec, lambda: self.stream_runtime, self.settings,
                                                        access_log=self._stream_access,
                                                        http_handoff=lambda t, peer, port=port:
                                                        self._http_handoff(t, port, peer)))

    def _http_handoff(self, transport: Any, port: int, mesh_peer: str | None = None) -> None:
        """A stream connection the mesh routes over HTTP: the HTTP/1.1 server takes it, routing on
        its original destination as on a `transparent` listener. `mesh_peer`: the calling sidecar's
        SPIFFE id, when the stream session terminated its mesh hop (our own HTTP inbound)."""
        server = H1Server(self, "http", port, True, False)
        server.mesh_peer = mesh_peer
        transport.set_protocol(server)
        server.connection_made(transport)

    def _stream_access(self, line: str) -> None:
        """Stream connection lines go to the access log too (error.log has them on meshway.stream)."""
        if self.access.file is not None:
            self.access._add(line.encode() + b"\n")

    # -- config
    async def apply_config(self, snapshot: dict[str, Any], config_hash: str | None) -> dict[str, Any]:
        """Compile off the loop, start health checks, swap; the answer for the master."""
        if config_hash is not None and config_hash == self.runtime.hash:
            return {"op": "applied", "hash": config_hash, "ms": 0}
        started = time.perf_counter()
        # A full collection over a big config would hold the GIL for ~100 ms and stall the loop:
        # no GC while compiling; afterwards the new config's objects leave the GC's generations.
        gc.disable()
        try:
            runtime = await self.loop.run_in_executor(None, self._compile, snapshot, config_hash)
            await self._update_checker(runtime)
        except Exception as e:
            log.error("configuration %s rejected: %s", config_hash, e)
            return {"op": "rejected", "hash": config_hash, "error": str(e)}
        finally:
            gc.enable()
        self.runtime = runtime
        mesh = runtime.mesh  # the mesh's per-request metrics hook, only where it counts (dp run)
        self.access.observe = mesh.observe_exchange if getattr(mesh, "counts", False) else None
        gc.freeze()
        ms = round((time.perf_counter() - started) * 1000, 1)
        log.info("configuration %s applied in %.1f ms (%d routes)", config_hash, ms, runtime.router.size)
        return {"op": "applied", "hash": config_hash, "ms": ms}

    def _compile(self, snapshot: dict[str, Any], config_hash: str | None) -> Runtime:
        snapshot = resolve_secrets(snapshot)  # the stream side's certificates need them too
        runtime = compile_runtime(snapshot, self.settings, hash=config_hash)
        if any(self.settings.stream_listen):
            from .stream import compile_stream_runtime

            runtime.stream = compile_stream_runtime(snapshot, self.settings, plugins=runtime.plugins)
        from .meshhooks import compile_mesh

        runtime.mesh = compile_mesh(snapshot, self.settings)
        # Whether any hop may be mesh mTLS: decided here, not asked per request (meshhooks).
        runtime.mesh_dials = getattr(runtime.mesh, "dials", True)
        return runtime

    async def _update_checker(self, runtime: Runtime) -> None:
        from .balancer import HealthChecker

        if self.checker is None:
            self.checker = HealthChecker.for_settings(self.settings)
            await self.checker.start(runtime.balancers)
        else:
            await self.checker.update(runtime.balancers)
        stream = getattr(runtime, "stream", None)
        if stream is not None:
            self.stream_runtime = stream

    # -- calls
    async def call(self, call_id: Any, method: str | None, args: dict[str, Any]) -> dict[str, Any]:
        try:
            result = await self._call(method, args)
        except Exception as e:
            return {"op": "reply", "id": call_id, "error": str(e)}
        return {"op": "reply", "id": call_id, "result": result}

    async def _call(self, method: str | None, args: dict[str, Any]) -> Any:
        if method == "upstream_health":
            if self.checker is None:
                return None
            if args.get("balancer_health"):
                return self.checker.balancer_health(args["upstream"])
            return self.checker.health(args["upstream"])
        if method == "set_target_health":
            if self.checker is None:
                return False
            return self.checker.set_health(args["upstream"], args["target"], bool(args["healthy"]), args.get("address"))
        if method == "metrics":
            return self.metrics()
        if method == "database_changed":  # plugins' caches of database rows (oauth2 tokens)
            from meshway.plugins import database_changed

            return database_changed()
        raise ValueError(f"unknown method {method!r}")

    def metrics(self) -> str:
        """Prometheus text for this worker: the prometheus plugin's series plus worker gauges."""
        from meshway.plugins import render_metrics, set_connections_source, set_health_source

        # As Kong: target health only when a prometheus plugin asks for it (upstream_health_metrics)
        set_health_source(self._target_health if self._health_metrics_on() else None)
        set_connections_source(self._connection_states)
        from .meshhooks import mesh_metrics_text

        return render_metrics(node_wide=self.worker_id == 0).decode() + self._worker_metrics() + mesh_metrics_text()

    def _health_metrics_on(self) -> bool:
        plugins = (self.runtime.snapshot or {}).get("plugins") or ()
        return any(p.get("name") == "prometheus" and p.get("enabled", True) is not False
                   and (p.get("config") or {}).get("upstream_health_metrics") for p in plugins)

    def _connection_states(self) -> dict[str, int]:
        """nginx's connection counts, as Kong's prometheus plugin reports them (at scrape time)."""
        busy = sum(1 for c in self.connections if c.active is not None)
        return {"accepted": self.accepted, "handled": self.accepted, "active": len(self.connections),
                "writing": busy, "waiting": len(self.connections) - busy, "reading": 0, "total": self.requests}

    def _target_health(self):
        """(upstream, target, address, state) for every target, as the prometheus plugin wants them."""
        if self.checker is None:
            return
        for name in self.runtime.balancers:
            for item in (self.checker.health(name) or {}).get("data", []):
                for addr in item.get("data", {}).get("addresses", []) or [{"ip": "", "port": "", "health": item["health"]}]:
                    yield name, item["target"], f"{addr['ip']}:{addr['port']}", addr["health"].lower()

    def _worker_metrics(self) -> str:
        stats = self.pool.stats()
        lines = [
            "# TYPE meshway_worker_connections gauge",
            f'meshway_worker_connections{{worker="{self.worker_id}"}} {len(self.connections)}',
            "# TYPE meshway_worker_requests_total counter",
            f'meshway_worker_requests_total{{worker="{self.worker_id}"}} {self.requests}',
            "# TYPE meshway_upstream_connections_created_total counter",
            f'meshway_upstream_connections_created_total{{worker="{self.worker_id}"}} {stats["created"]}',
            "# TYPE meshway_upstream_connections_idle gauge",
            f'meshway_upstream_connections_idle{{worker="{self.worker_id}"}} {stats["idle"]}',
            "# TYPE meshway_config_routes gauge",
            f'meshway_config_routes{{worker="{self.worker_id}"}} {self.runtime.router.size}',
        ]
        return "\n".join(lines) + "\n"

    # -- stop
    async def shutdown(self, grace: float = 30.0) -> None:
        """Close listeners, let exchanges in flight finish (up to `grace`), close the rest."""
        for server in self.servers:
            server.close()
        if self.memory is not None:
            self.memory.stop()
        deadline = self.loop.time() + grace
        while self.loop.time() < deadline:
            busy = [c for c in self.connections if c.active is not None and not c.closed]
            for conn in list(self.connections):
                if conn.active is None:
                    conn.close()
            if not busy:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        if self.checker is not None:
            await self.checker.stop()
        http2 = sys.modules.get("meshway.proxy.http2")  # loaded with the first HTTP/2 connection, if any
        if http2 is not None:
            http2.close_pools(self)
        self.pool.close()
        self.access.close()


def _ensure_dir(path: Any) -> Any:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return path
