"""One stream connection: original destination, preread, route, dial, relay, log.

Rules:
- On a `proxy_protocol` listener the PROXY header comes first (within PROXY_HEADER_TIMEOUT);
  its addresses replace the socket's for routing and logging, and it is never forwarded.
- Routing needs only what the plan says: when no candidate route depends on the ClientHello,
  the upstream is dialled at once (server-speaks-first works); otherwise the client's first
  bytes are read for at most `stream_preread_timeout` and then decided on.
- Bytes the client sends before the upstream is ready are kept in order and written first;
  past HIGH_WATER the client is paused until the upstream connects.
- Backpressure: a transport over its write high-water mark pauses reading on the other side
  (`pause_writing` -> peer `pause_reading`), and resumes it when drained.
- Half-close: an EOF from either side becomes an EOF (or TLS close_notify) towards the other;
  the connection ends when both directions have ended, when either side resets, on the
  service's idle timeout (no byte either way), or when the upstream cannot be reached.
- Every connection ends through `_finish`, exactly once, with one log line.
- Mesh (rules in `meshway.mesh`): a connection to a destination this sidecar fronts is always
  preread; a ClientHello with the mesh SNI is terminated with the node certificate, and the
  upstream is dialled only once the peer's certificate was verified. An upstream hop fronted
  by another sidecar is dialled with mesh mutual TLS instead of the service's own TLS.
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Callable

from ..meshhooks import MESH_ALPN, MESH_SNI, is_mesh_sni, peer_spiffe_id

from .. import netutil
from ._clienthello import MAX_HELLO, NOT_TLS, TLS_NO_SNI, HelloStatus, Preread, parse_client_hello
from ._bridge import RBAC_DENIED, MeshGate, TlsBridge
from ._legs import PlainLeg, TlsFailure, TlsLeg
from ._log import (BAD_PROXY_HEADER, CLIENT_CLOSED, CLIENT_RESET, CLIENT_TLS_FAILED, CONNECT_FAILED, IDLE_TIMEOUT,
                   INTERNAL_ERROR, MESH_DENIED, MESH_REFUSED, MESH_UNREACHABLE, NO_ROUTE, NO_SERVICE, NO_UPSTREAM,
                   UPSTREAM_CLOSED, UPSTREAM_RESET, UPSTREAM_TLS_FAILED, ConnectionRecord, emit)
from ._proxyproto import ProxyHeader, ProxyHeaderError, parse_proxy_header
from ._plugins import PLUGIN_EXIT, StreamContext, scheme_of, tls_info
from ._router import ConnectionFacts, StreamRoute, choose_mesh_route, choose_route, plan_connection
from ._targets import Hop

HIGH_WATER = 1024 * 1024
_NEW, _PROXYHDR, _PREREAD, _CONNECTING, _RELAY, _DONE = "new", "proxy", "preread", "connecting", "relay", "done"
PROXY_HEADER_TIMEOUT = 5.0  # a balancer sends it at once; anything slower is not one
STRICT_REFUSAL = "mesh_mtls = strict: plain connection from outside the mesh"
# What bytes from the client mean in each state: the session's transition table for its input.
_CLIENT_BYTES = {
    _NEW: "_drop", _PROXYHDR: "_proxy_header_data", _PREREAD: "_preread_data", _CONNECTING: "_from_client", _RELAY: "_from_client", _DONE: "_drop",
}


@dataclasses.dataclass(frozen=True)
class ListenerContext:
    """What every connection of one listener shares."""

    label: str
    tls_only: bool
    get_runtime: Callable[[], Any]
    access_log: Callable[[str], None] | None = None
    proxy_protocol: bool = False
    # The worker's HTTP server, for connections the mesh says speak HTTP (`mesh.speaks_http`):
    # `http_handoff(transport, mesh_peer)` makes the HTTP/1.1 protocol own the connection from
    # here on (mesh_peer: the SPIFFE id of a terminated mesh hop, for the receiving side).
    http_handoff: Callable[..., None] | None = None


def final_verdict(buffer: bytes) -> Preread:
    """The verdict when no more bytes will come in time: partial TLS counts as TLS."""
    seen = parse_client_hello(buffer)
    if seen.status is HelloStatus.NEED_MORE:
        return TLS_NO_SNI if buffer else NOT_TLS
    return seen


class _UpstreamSide(asyncio.Protocol):
    """The upstream transport's protocol: hands everything to the session."""

    __slots__ = ("session",)

    def __init__(self, session: "StreamSession") -> None:
        self.session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.session._upstream_connected(transport)

    def data_received(self, data: bytes) -> None:
        self.session._from_upstream(data)

    def eof_received(self) -> bool:
        self.session._upstream_ended()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.session._upstream_lost(exc)

    def pause_writing(self) -> None:
        self.session._pause_client("upstream_full")

    def resume_writing(self) -> None:
        self.session._resume_client("upstream_full")


class StreamSession(asyncio.Protocol):
    """The client connection's protocol and the state of the whole relay."""

    def __init__(self, listener: ListenerContext) -> None:
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self._enter(_NEW)
        self.record = ConnectionRecord(listener=listener.label)
        self._client: Any = None
        self._upstream: Any = None
        self.runtime: Any = None  # the listener's stream runtime, once the connection is made
        self._client_leg: Any = None
        self._ctx: StreamContext | None = None  # only on a route with stream plugins
        self._upstream_leg: Any = None
        self._service: Any = None
        self._hop: Hop | None = None
        self._facts: ConnectionFacts | None = None
        self._mesh_in = self._mesh_hop = False
        self._zone_hop: Any = None  # a hop to another zone (meshway.zones): its SNI and the identity required
        self._client_ip = ""
        self._candidates: tuple[StreamRoute, ...] = ()
        self._preread = bytearray()
        self._early: list[bytes] = []
        self._early_size = 0
        self._client_pauses: set[str] = set()
        self._client_eof = self._upstream_eof = False
        self._first_closer: str | None = None
        self._refusal: tuple[str, str] | None = None  # an HTTP refusal answered, waiting for the client to close
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._idle = 0.0
        self._started = self._last = self._loop.time()

    # ---- client transport events -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._client = transport
        try:
            facts = self._socket_facts_of(transport)
        except OSError as e:  # the client is already gone
            return self._finish(CLIENT_RESET, str(e))
        self.runtime = self._listener.get_runtime()
        if self._listener.proxy_protocol:
            self._socket_facts = facts
            self._enter(_PROXYHDR)
            self._timer = self._loop.call_later(PROXY_HEADER_TIMEOUT, self._finish, BAD_PROXY_HEADER, "timeout")
            return
        self._route(facts)

    def _route(self, facts: ConnectionFacts) -> None:
        self._facts, mesh = facts, self.runtime.mesh
        unreachable = mesh.unreachable_service(facts.dst_ip, facts.dst_port)
        if unreachable is not None:
            service, http = unreachable
            why = f"service {service} is not reachable from this data plane (reachableServices, or no " \
                  "MeshTrafficPermission allows it)"
            return self._refuse_http(MESH_UNREACHABLE, why) if http else self._finish(MESH_UNREACHABLE, why)
        if self._listener.http_handoff is not None and mesh.speaks_http(facts.dst_ip, facts.dst_port):
            return self._hand_to_http()
        if mesh.wants_preread(facts.dst_ip, facts.dst_port):
            self._mesh_in = True
            return self._begin_preread(self.runtime.router.candidates(facts))
        if not mesh.admits_plain(facts.src_ip, facts.dst_ip, facts.dst_port):
            return self._finish(MESH_REFUSED, STRICT_REFUSAL)
        if self._listener.http_handoff is not None and mesh.serves_http(facts.dst_ip, facts.dst_port):
            return self._hand_to_http()  # our own HTTP inbound, mTLS off: the receiving HTTP path
        plan = plan_connection(self.runtime.router, facts, self._listener.tls_only)
        if plan.preread:
            self._begin_preread(plan.candidates)
        elif plan.route is not None:
            self._start(plan.route, plan.route.takes_tls, b"")
        else:
            self._finish(NO_ROUTE)

    def _hand_to_http(self) -> None:
        """An HTTP destination of the mesh: the HTTP path (routes, retries, access log) takes over."""
        self._enter(_DONE)
        self._listener.http_handoff(self._client, None)

    def _hand_mesh_to_http(self, plain: bytes) -> None:
        """Our own HTTP inbound, mesh hop terminated and permitted: the HTTP/1.1 server serves it
        over the TLS leg (per-request access log, answers as HTTP), Kuma's inbound HTTP listener."""
        self._enter(_DONE)
        self._cancel_timer()
        listener = self._listener
        gate = MeshGate(lambda: listener.get_runtime().mesh, self._client_leg.peer_der,
                        (self._facts.dst_ip, self._facts.dst_port), self.runtime.mesh)
        bridge = TlsBridge(self._client, self._client_leg, gate)
        self._client.set_protocol(bridge)
        self._listener.http_handoff(bridge, self.record.peer)
        bridge.deliver(plain)

    def data_received(self, data: bytes) -> None:
        self._last = self._loop.time()
        self._on_client_bytes(data)

    def eof_received(self) -> bool:
        if self._state is _PROXYHDR:
            self._finish(BAD_PROXY_HEADER, "client closed before the header ended")
        if self._state is _PREREAD:
            self._decide(final_verdict(bytes(self._preread)))
        if self._state is not _DONE:
            self._client_ended()
        return True

    def _refuse_http(self, reason: str, detail: str) -> None:
        """An HTTP client the mesh refuses: a 403 saying why, then the connection ends when the client
        closes (at most 2 s later), so the answer is not lost to a reset over an unread request."""
        body = f"{detail}\n".encode()
        self._client.write(b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nconnection: close\r\n"
                           b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        if self._client.can_write_eof():
            self._client.write_eof()
        self._refusal = (reason, detail)
        self._timer = self._loop.call_later(2.0, self._finish, reason, detail)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refusal is not None:
            return self._finish(*self._refusal)
        if exc is not None:
            self._finish(CLIENT_RESET, str(exc))
        else:
            self._finish(self._first_closer or CLIENT_CLOSED)

    def pause_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        if self._upstream is not None and not self._upstream.is_closing():
            self._upstream.resume_reading()

    def _enter(self, state: str) -> None:
        self._state = state
        self._on_client_bytes = getattr(self, _CLIENT_BYTES[state])

    def _drop(self, data: bytes) -> None:
        pass  # before routing is set up, or after the end: nothing to do with them

    # ---- routing -----------------------------------------------------------------------

    def _socket_facts_of(self, transport: Any) -> ConnectionFacts:
        sock = transport.get_extra_info("socket")
        src_ip, src_port = netutil.peer_address(sock)
        self._client_ip = src_ip
        dst_ip, dst_port = netutil.original_destination(sock)
        self.record.client = f"{src_ip}:{src_port}"
        self.record.destination = f"{dst_ip}:{dst_port}"
        return ConnectionFacts(src_ip, src_port, dst_ip, dst_port)

    def _proxy_header_data(self, data: bytes) -> None:
        self._preread += data
        try:
            header = parse_proxy_header(bytes(self._preread))
        except ProxyHeaderError as e:
            return self._finish(BAD_PROXY_HEADER, str(e))
        if header is None:
            return
        self._cancel_timer()
        rest, self._preread = bytes(self._preread[header.length:]), bytearray()
        self._route(self._proxied_facts(header))
        if rest:
            self._on_client_bytes(rest)

    def _proxied_facts(self, header: ProxyHeader) -> ConnectionFacts:
        """Addresses from the header replace the socket's (LOCAL/UNKNOWN headers keep them)."""
        seen = self._socket_facts
        src = header.source or (seen.src_ip, seen.src_port)
        dst = header.destination or (seen.dst_ip, seen.dst_port)
        self.record.client, self.record.destination = f"{src[0]}:{src[1]}", f"{dst[0]}:{dst[1]}"
        self._client_ip = src[0]
        return ConnectionFacts(src[0], src[1], dst[0], dst[1])

    def _begin_preread(self, candidates: tuple[StreamRoute, ...]) -> None:
        self._enter(_PREREAD)
        self._candidates = candidates
        self._timer = self._loop.call_later(self.runtime.preread_timeout, self._preread_expired)

    def _preread_data(self, data: bytes) -> None:
        self._preread += data
        seen = parse_client_hello(bytes(self._preread))
        if seen.status is HelloStatus.NEED_MORE and len(self._preread) <= MAX_HELLO:
            return
        self._decide(seen)

    def _preread_expired(self) -> None:
        if self._state is _PREREAD:
            self._decide(final_verdict(bytes(self._preread)))

    def _decide(self, seen: Preread) -> None:
        self._cancel_timer()
        early, self._preread = bytes(self._preread), bytearray()
        self.record.sni = seen.sni
        self.record.kind = "tls" if seen.status is HelloStatus.TLS else "tcp"
        if self._mesh_in and seen.status is HelloStatus.TLS and is_mesh_sni(seen.sni):
            return self._start_mesh(choose_mesh_route(self._candidates), early)
        facts = self._facts
        if self._mesh_in and not self.runtime.mesh.admits_plain(facts.src_ip, facts.dst_ip, facts.dst_port):
            return self._finish(MESH_REFUSED, STRICT_REFUSAL)
        route = choose_route(self._candidates, seen, self._listener.tls_only)
        if route is None:
            return self._finish(NO_ROUTE)
        self._start(route, seen.status is HelloStatus.TLS, early)

    def _start_mesh(self, route: StreamRoute | None, early: bytes) -> None:
        """Terminate the mesh hop; the upstream is dialled once the peer is verified."""
        self.record.mtls = True
        if route is None:
            return self._finish(NO_ROUTE)
        self.record.route, self.record.mode = route.label, "mesh"
        if route.service is None:
            return self._finish(NO_SERVICE)
        self._service = route.service
        self._client_leg = TlsLeg(self._client, self.runtime.mesh.server_ctx, server_side=True)
        self._enter(_CONNECTING)
        self._arm_idle(self._service.idle_timeout)
        self._from_client(early)

    def _mesh_peer_verified(self, leg: Any, failure: str) -> bool:
        """After a mesh handshake: the peer must be a mesh node that spoke the mesh ALPN."""
        self.record.peer = peer_spiffe_id(leg.peer_der)
        if self.record.peer is None or leg.alpn != MESH_ALPN:
            self._finish(failure, "the peer is not a mesh node (no meshway SPIFFE id or mesh ALPN)")
            return False
        if leg is self._client_leg:  # a calling sidecar: the mesh's metrics name its service
            self.runtime.mesh.saw_peer(self.record.peer, leg.peer_der)
        return True

    def _mesh_permitted(self) -> bool:
        """MeshTrafficPermission (mTLS on): one decision per connection, from the peer certificate.
        Denied: an HTTP inbound answers 403 (Envoy's RBAC body), any other is closed."""
        verdict = self.runtime.mesh.check_peer(self._client_leg.peer_der, self._facts.dst_ip, self._facts.dst_port)
        if verdict is None:
            return True
        decision, http = verdict
        if decision.allowed:
            return True
        if http:
            self._client_leg.write(RBAC_DENIED)
            self._client_leg.write_eof()
        self._finish(MESH_DENIED, decision.why())
        return False

    def _start(self, route: StreamRoute, client_tls: bool, early: bytes) -> None:
        mode = route.mode_for(client_tls)
        self.record.kind = "tls" if client_tls else "tcp"
        self.record.route, self.record.mode = route.label, mode
        pending = None
        if route.plugins is not None:  # Kong's preread phase: after the router, before the balancer
            self._ctx = StreamContext(route.plugins, scheme_of(mode), self._client_ip, self._server_port(),
                                      self._started, self._loop.time())
            pending = self._ctx.preread()
            if self._ctx.exited is not None:
                return self._finish(PLUGIN_EXIT, f"closed by a preread plugin (status {self._ctx.exited})")
        if route.service is None:
            return self._finish(NO_SERVICE)
        self._service = route.service
        if mode == "terminate":
            self._client_leg = TlsLeg(self._client, self.runtime.certificates.default, server_side=True)
        else:
            self._client_leg = PlainLeg(self._client)
        self._enter(_CONNECTING)
        self._arm_idle(self._service.idle_timeout)
        self._task = self._loop.create_task(self._dial(self._service, pending))
        if early:
            self._from_client(early)

    # ---- upstream connection -----------------------------------------------------------

    def _server_port(self) -> int:
        local = netutil.local_address(self._client)
        return local[1] if local else 0

    async def _dial(self, service: Any, preread: Any = None) -> None:
        try:
            if preread is not None:  # a preread plugin suspended: the dial waits for its verdict
                await preread
                if self._ctx.exited is not None:
                    return self._finish(PLUGIN_EXIT, f"closed by a preread plugin (status {self._ctx.exited})")
            await self._try_peers(service)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not leave the client hanging
            self._finish(INTERNAL_ERROR, repr(e))

    async def _try_peers(self, service: Any) -> None:
        tried: set = set()
        error = ""
        for _ in range(service.attempts):
            hop = self._original_hop(tried) if service.original_destination else \
                service.targets.pick(self._client_ip, frozenset(tried))
            if hop is None:
                break
            tried.add(hop.peer)
            error = await self._try_hop(service, hop)
            if not error or self._state is _DONE:
                return
        if not tried:
            return self._finish(NO_UPSTREAM, f"service {service.label} has no healthy target")
        self._finish(CONNECT_FAILED, error)

    def _original_hop(self, tried: set) -> Hop | None:
        """The connection's original destination, unless that is this listener (a loop)."""
        facts = self._facts
        local = netutil.local_address(self._client)
        if tried or facts is None or (facts.dst_ip, facts.dst_port) == local:
            return None
        return Hop(facts.dst_ip, facts.dst_port, False, None)

    async def _try_hop(self, service: Any, hop: Hop) -> str:
        """Dial one hop; the error text, or "" once connected."""
        self._hop = hop
        self._zone_hop = self.runtime.mesh.zone_hop(service.name)
        if self._zone_hop is not None and self.runtime.mesh.client_ctx is None:
            return f"{hop}: no mesh certificate yet for a call to another zone"
        self._mesh_hop = self._zone_hop is not None or self.runtime.mesh.upgrades(hop.host, hop.port)
        self.record.upstream, self.record.upstream_tls = str(hop), hop.tls or self._mesh_hop
        self.record.mtls = self.record.mtls or self._mesh_hop
        factory = lambda: _UpstreamSide(self)  # noqa: E731
        if self._ctx is not None:
            self._ctx.try_started(hop)
        try:
            await asyncio.wait_for(
                netutil.connect_upstream(self._loop, factory, hop.host, hop.port,
                                         self.runtime.mesh.source_for(hop.host, hop.port) or self.runtime.source),
                service.connect_timeout)
        except asyncio.TimeoutError:
            service.targets.failed(hop, timeout=True)
            if self._ctx is not None:
                self._ctx.try_failed(timeout=True)
            return f"{hop}: connect timed out after {service.connect_timeout:g}s"
        except OSError as e:
            service.targets.failed(hop, timeout=False)
            if self._ctx is not None:
                self._ctx.try_failed(timeout=False)
            return f"{hop}: {e.strerror or e}"
        return ""

    def _upstream_connected(self, transport: Any) -> None:
        if self._state is _DONE:
            transport.close()
            return
        self._upstream = transport
        self._service.targets.connected(self._hop)
        if self._ctx is not None:
            self._ctx.connected(self._loop.time())
        ctx, server_name = self._upstream_tls()
        if ctx is not None:
            self._upstream_leg = TlsLeg(transport, ctx, False, server_name)
            if not self._guard(self._upstream_leg.start, UPSTREAM_TLS_FAILED):
                return
        else:
            self._upstream_leg = PlainLeg(transport)
        self._enter(_RELAY)
        self._flush_early()

    def _upstream_tls(self) -> tuple[Any, str | None]:
        """The hop's TLS: the mesh's (replacing the service's own), the service's, or none."""
        if self._mesh_hop:
            return self.runtime.mesh.client_ctx, self._zone_hop.sni if self._zone_hop is not None else MESH_SNI
        if self._hop.tls:
            return self._service.client_tls, self._service.server_hostname
        return None, None

    def _flush_early(self) -> None:
        early, self._early, self._early_size = b"".join(self._early), [], 0
        if early and not self._guard(lambda: self._upstream_leg.write(early), UPSTREAM_TLS_FAILED):
            return
        if self._client_eof:
            self._upstream_leg.write_eof()
        self._resume_client("early")

    # ---- relaying ----------------------------------------------------------------------

    def _from_client(self, raw: bytes) -> None:
        try:
            plain = self._client_leg.receive(raw)
        except TlsFailure as e:
            refused = self.record.mode == "mesh" and not self._client_leg.handshaken
            return self._finish(MESH_REFUSED if refused else CLIENT_TLS_FAILED, str(e))
        if self._task is None and self._state is _CONNECTING and self._client_leg.handshaken:
            if not self._mesh_peer_verified(self._client_leg, MESH_REFUSED) or not self._mesh_permitted():
                return
            if self._listener.http_handoff is not None and \
                    self.runtime.mesh.serves_http(self._facts.dst_ip, self._facts.dst_port):
                return self._hand_mesh_to_http(plain)
            self._task = self._loop.create_task(self._dial(self._service))
        if plain:
            self._to_upstream(plain)
        if self._client_leg.eof and self._state is not _DONE:
            self._client_ended()

    def _to_upstream(self, plain: bytes) -> None:
        self.record.up_bytes += len(plain)
        if self._upstream_leg is not None:
            try:
                self._upstream_leg.write(plain)
            except TlsFailure as e:
                self._finish(UPSTREAM_TLS_FAILED, str(e))
            return
        self._early.append(plain)
        self._early_size += len(plain)
        if self._early_size > HIGH_WATER:
            self._pause_client("early")

    def _from_upstream(self, raw: bytes) -> None:
        self._last = self._loop.time()
        if self._state is _DONE:
            return
        try:
            plain = self._upstream_leg.receive(raw)
        except TlsFailure as e:
            return self._finish(UPSTREAM_TLS_FAILED, str(e))
        if self._upstream_leg.peer_der and self.record.upstream_der is None:
            self.record.upstream_der = self._upstream_leg.peer_der
            if self._mesh_hop and not self._mesh_peer_verified(self._upstream_leg, UPSTREAM_TLS_FAILED):
                return
            if self._zone_hop is not None and not self._zone_hop.answered_by(self.record.upstream_der):
                return self._finish(UPSTREAM_TLS_FAILED, f"the peer is not {self._zone_hop.identity} "
                                                         "(another zone's hop is verified end to end)")
        if plain:
            self.record.down_bytes += len(plain)
            try:
                self._client_leg.write(plain)
            except TlsFailure as e:
                return self._finish(CLIENT_TLS_FAILED, str(e))
        if self._upstream_leg.eof and self._state is not _DONE:
            self._upstream_ended()

    def _guard(self, action: Callable[[], Any], reason: str) -> bool:
        try:
            action()
            return True
        except TlsFailure as e:
            self._finish(reason, str(e))
            return False

    def _pause_client(self, reason: str) -> None:
        if not self._client_pauses and self._client is not None and not self._client.is_closing():
            self._client.pause_reading()
        self._client_pauses.add(reason)

    def _resume_client(self, reason: str) -> None:
        if reason not in self._client_pauses:
            return
        self._client_pauses.discard(reason)
        if not self._client_pauses and not self._client.is_closing():
            self._client.resume_reading()

    # ---- ending ------------------------------------------------------------------------

    def _client_ended(self) -> None:
        if self._client_eof:
            return
        self._client_eof = True
        self._first_closer = self._first_closer or CLIENT_CLOSED
        if self._upstream_leg is not None:
            self._upstream_leg.write_eof()
        self._maybe_done()

    def _upstream_ended(self) -> None:
        if self._upstream_eof or self._state is _DONE:
            return
        self._upstream_eof = True
        self._first_closer = self._first_closer or UPSTREAM_CLOSED
        self._client_leg.write_eof()
        self._maybe_done()

    def _upstream_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._finish(UPSTREAM_RESET, str(exc))
        else:
            self._finish(self._first_closer or UPSTREAM_CLOSED)

    def _maybe_done(self) -> None:
        if self._client_eof and self._upstream_eof:
            self._finish(self._first_closer or CLIENT_CLOSED)

    def _arm_idle(self, timeout: float) -> None:
        self._idle = timeout
        self._timer = self._loop.call_later(timeout, self._idle_check)

    def _idle_check(self) -> None:
        quiet = self._loop.time() - self._last
        if quiet >= self._idle:
            self._finish(IDLE_TIMEOUT, f"no bytes either way for {self._idle:g}s")
        else:
            self._timer = self._loop.call_later(self._idle - quiet, self._idle_check)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self, reason: str, detail: str | None = None) -> None:
        if self._state is _DONE:
            return
        self._enter(_DONE)
        self.record.reason, self.record.detail = reason, detail
        if reason == NO_ROUTE and self.runtime is not None and self.runtime.global_plugins is not None:
            scheme = "tls" if self.record.kind == "tls" else "tcp"  # no route: the global plugins log it (Kong)
            self._ctx = StreamContext(self.runtime.global_plugins, scheme, self._client_ip, self._server_port(),
                                      self._started, self._loop.time())
        self._cancel_timer()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._upstream is not None:
            self._service.targets.released(self._hop)
        for transport in (self._client, self._upstream):
            if transport is not None:
                transport.close()  # flushes what is already buffered, then FIN
        duration = self._loop.time() - self._started
        emit(self.record, duration, self._listener.access_log)
        if self.runtime is not None:
            self.runtime.mesh.observe_session(self.record, duration)
        if self._ctx is not None:
            if self.record.mode == "terminate" and self._client_leg is not None and self._client_leg.handshaken:
                self._ctx.tls = tls_info(self._client_leg)
            self._ctx.finished(self.record, duration)
