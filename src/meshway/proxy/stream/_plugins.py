"""Plugins on stream routes: Kong's stream subsystem runs their `preread` and `log` phases.

Rules (Kong 3's stream subsystem, kept):
- A connection's plugins are its route's and service's and the global ones, with the HTTP
  scope precedence (`PluginSet.chain_for`, the same instances); streams have no consumer.
- A plugin runs when it handles streams (`Plugin.stream`) and its entity's `protocols` hold the
  connection's protocol: `tcp` (plain bytes on a tcp route), `tls` (terminated by a tls
  route), `tls_passthrough`, `udp`. It is the HTTP rule (`ctx.scheme in protocols`), run by the
  same engine (`_engine.run_phase`, `_engine.start_log`).
- `preread` runs once the route is chosen, before the upstream is dialled (and before a tls
  route's handshake); `ctx.exit(status)` closes the connection, as Kong's `ngx.exit(status)`,
  and that status is the session's.
- `log` runs once the session ended, for each connection that got a route; a connection (or a
  udp client's datagram) that found no route runs the global plugins' `log` (session status 500,
  Kong's "no Route found").
- The session status (nginx's stream `$status`, Kong's `session.status`): 200 when the
  session ran its course (closed by either side, idle timeout, reset), 400 bad client data
  (TLS handshake, PROXY header), 403 refused, 500 no route or an internal error, 502 upstream
  not reachable, 503 no service or no healthy target; a plugin's exit gives its own.

Theory of operation: compiled per route at config time (`StreamPlugins`, None when no stream
plugin applies: such a route costs one attribute test per connection). A connection with
plugins gets a `StreamContext`, the `RequestContext` of a session: no request or response,
`log_fields()` is Kong's stream serializer (`kong.log.serialize` in the stream subsystem).
"""
from __future__ import annotations

import copy
import inspect
import logging
import time
from typing import Any, Mapping

from .. import _tries
from .._engine import run_phase, start_log
from .._plugins import Chain, Instance, Link, PluginSet
from ._log import (BAD_PROXY_HEADER, CLIENT_TLS_FAILED, CONNECT_FAILED, INTERNAL_ERROR, MESH_DENIED, MESH_REFUSED,
                   MESH_UNREACHABLE, NO_ROUTE, NO_SERVICE, NO_UPSTREAM, UPSTREAM_TLS_FAILED, ConnectionRecord)

log = logging.getLogger("meshway.stream")

SCHEMES = ("tcp", "tls", "tls_passthrough", "udp")
_MODE_SCHEME = {"raw": "tcp", "terminate": "tls", "passthrough": "tls_passthrough"}
PLUGIN_EXIT = "plugin_exit"  # the connection's close reason when a preread plugin ended it
_STATUS = {
    NO_ROUTE: 500, INTERNAL_ERROR: 500, NO_SERVICE: 503, NO_UPSTREAM: 503, CONNECT_FAILED: 502,
    UPSTREAM_TLS_FAILED: 502, CLIENT_TLS_FAILED: 400, BAD_PROXY_HEADER: 400, MESH_REFUSED: 403, MESH_DENIED: 403,
    MESH_UNREACHABLE: 403,
}
_pending: set = set()  # log phases that really await (a Task must be referenced until it ends)


class StreamPlugins:
    """The stream plugins of one route (or the global ones), and for which protocols each phase has work."""

    __slots__ = ("chain", "preread", "log", "route", "service")

    def __init__(self, chain: Chain, route: Mapping[str, Any] | None, service: Mapping[str, Any] | None):
        self.chain = chain
        self.preread = frozenset(s for s in SCHEMES if chain.resolve("preread", s))
        self.log = frozenset(s for s in SCHEMES if chain.resolve("log", s))
        self.route, self.service = route, service


def scheme_of(mode: str) -> str:
    """The protocol a plugin's `protocols` is matched with, for a connection in `mode`."""
    return _MODE_SCHEME.get(mode, "tcp")


def compile_stream_plugins(pset: PluginSet | None, route: Mapping[str, Any] | None,
                           service: Mapping[str, Any] | None) -> StreamPlugins | None:
    """The plugins of `route` (None: the global ones) on streams; None when none would run."""
    if pset is None or not pset.names:
        return None
    full = pset.chain_for(route["id"], service["id"] if service else None) if route else pset.global_chain
    links = tuple(Link(link.name, _on_streams(link.default), {}) for link in full.links
                  if link.default is not None and getattr(type(link.default.plugin), "stream", False))
    plugins = StreamPlugins(Chain(links), route, service)
    return plugins if plugins.preread or plugins.log else None


def _on_streams(inst: Instance) -> Instance:
    """The instance as streams run it: a plugin's `stream_log`, when it has one, is its log phase there
    (prometheus records other families for sessions; its HTTP `log` stays free of the test)."""
    fn = getattr(inst.plugin, "stream_log", None)
    if fn is None or "log" not in inst.phases:
        return inst
    twin = copy.copy(inst)
    twin.phases = {**inst.phases, "log": (fn, inspect.iscoroutinefunction(fn))}
    return twin


class StreamContext:
    """What a stream plugin sees of one session (`RequestContext`'s fields that a session has)."""

    consumer = credential = consumer_id = authenticated_groups = None
    response_status = None
    method = host = path = query = ""
    http_version = ""
    client_trusted = False

    def __init__(self, plugins: StreamPlugins, scheme: str, client_ip: str, server_port: int, started: float,
                 loop_now: float) -> None:
        self.plugins, self.scheme, self.client_ip, self.server_port = plugins, scheme, client_ip, server_port
        self.route, self.service = plugins.route, plugins.service
        self.started_at = time.time() - (loop_now - started)  # epoch seconds of the accept
        self._started = started  # the loop clock at the accept
        self.request_id = f"{client_ip}:{int(self.started_at * 1e6)}"
        self.exited: int | None = None
        self.shared: dict[str, Any] = {}
        self.balancer_tries: list = []
        self.status: int | None = None
        self.response_source: str | None = None
        self.tls: dict[str, str] | None = None
        self.proxied_at: float | None = None  # loop clock when the upstream connection was up
        self.session_ms = 0.0
        self.request_size = self.response_size = 0  # bytes from / to the client
        self.upstream_sent = self.upstream_received = 0

    def exit(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        """Close the connection with this session status (a stream has no answer to send)."""
        self.exited = status

    @property
    def tries(self) -> list[dict[str, Any]]:
        return _tries.kong_tries(self.balancer_tries)

    @property
    def upstream_connect_time(self) -> list[float | None]:
        return [t[_tries.CONNECT] for t in self.balancer_tries]

    balancer_hostname = None  # a stream service's targets are addresses

    @property
    def latencies(self) -> dict[str, float]:
        kong = (self.proxied_at - self._started) * 1000 if self.proxied_at is not None else self.session_ms
        return {"kong": round(kong), "session": round(self.session_ms)}

    def log_fields(self) -> dict[str, Any]:
        """Kong's stream serializer (kong/pdk/log.lua, subsystem stream); absent values are left out."""
        session: dict[str, Any] = {"received": self.request_size, "sent": self.response_size, "status": self.status,
                                   "server_port": self.server_port}
        if self.tls is not None:
            session = {"tls": self.tls, **session}
        fields = {
            "session": session,
            "upstream": {"received": self.upstream_received, "sent": self.upstream_sent},
            "latencies": self.latencies,
            "tries": self.tries or None,
            "route": dict(self.route) if self.route else None,
            "service": dict(self.service) if self.service else None,
            "client_ip": self.client_ip,
            "started_at": int(self.started_at * 1000),
        }
        return {k: v for k, v in fields.items() if v is not None}

    # ---- what the session calls ------------------------------------------------------

    def preread(self) -> Any:
        """The preread phase: an awaitable only if a plugin really suspends."""
        if self.scheme not in self.plugins.preread:
            return None
        return run_phase(self.plugins.chain, "preread", self)

    def try_started(self, hop: Any) -> None:
        now = time.time_ns()
        self.balancer_tries.append([now, 0, hop, None, None])

    def try_failed(self, timeout: bool) -> None:
        _tries.failed(self, 504 if timeout else 502, connecting=True)

    def connected(self, now: float) -> None:
        _tries.connected(self)
        self.proxied_at = now

    def finished(self, record: ConnectionRecord, duration: float) -> None:
        """The session ended: fill in what the log phase reports, then run it."""
        if self.scheme not in self.plugins.log:
            return
        self.status = self.exited or _STATUS.get(record.reason or "", 200)
        self.response_source = "service" if self.proxied_at is not None else "kong"
        self.session_ms = duration * 1000
        self.request_size = self.upstream_sent = record.up_bytes
        self.response_size = self.upstream_received = record.down_bytes
        pending = start_log(self.plugins.chain, self)
        if pending is not None:
            import asyncio

            task = asyncio.ensure_future(pending)
            _pending.add(task)
            task.add_done_callback(_pending.discard)


def tls_info(leg: Any) -> dict[str, str] | None:
    """Kong's `session.tls` for a terminated client leg: version, cipher, client_verify."""
    ssl_object = getattr(leg, "_ssl", None)
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return {"version": ssl_object.version() or "", "cipher": cipher[0] if cipher else "", "client_verify": "NONE"}
