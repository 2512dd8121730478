"""A stream session's first part: from the connection's facts to a route (PROXY header, preread,
mesh termination and permission, stream plugins' `preread`), up to dialling.

`Routing` is a part of `_session.StreamSession` (the rules are in that module's docstring); it
reads and sets the session's state and calls into `_relay.Relay` (`_dial`, `_from_client`) to go on.
"""
from __future__ import annotations

from typing import Any

from ..meshhooks import MESH_ALPN, is_mesh_sni, peer_spiffe_id

from .. import netutil
from ._bridge import RBAC_DENIED, MeshGate, TlsBridge
from ._clienthello import MAX_HELLO, NOT_TLS, TLS_NO_SNI, HelloStatus, Preread, parse_client_hello
from ._legs import PlainLeg, TlsLeg
from ._log import BAD_PROXY_HEADER, MESH_DENIED, MESH_REFUSED, MESH_UNREACHABLE, NO_ROUTE, NO_SERVICE
from ._plugins import PLUGIN_EXIT, StreamContext, scheme_of
from ._proxyproto import ProxyHeader, ProxyHeaderError, parse_proxy_header
from ._router import ConnectionFacts, StreamRoute, choose_mesh_route, choose_route, plan_connection
from ._states import CONNECTING, DONE, PREREAD

STRICT_REFUSAL = "mesh_mtls = strict: plain connection from outside the mesh"


def final_verdict(buffer: bytes) -> Preread:
    """The verdict when no more bytes will come in time: partial TLS counts as TLS."""
    seen = parse_client_hello(buffer)
    if seen.status is HelloStatus.NEED_MORE:
        return TLS_NO_SNI if buffer else NOT_TLS
    return seen


class Routing:
    """The session's routing part: PROXY header, preread, route choice, mesh checks, plugins' preread."""

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
        self._enter(DONE)
        self._listener.http_handoff(self._client, None)

    def _hand_mesh_to_http(self, plain: bytes) -> None:
        """Our own HTTP inbound, mesh hop terminated and permitted: the HTTP/1.1 server serves it
        over the TLS leg (per-request access log, answers as HTTP), Kuma's inbound HTTP listener."""
        self._enter(DONE)
        self._cancel_timer()
        listener = self._listener
        gate = MeshGate(lambda: listener.get_runtime().mesh, self._client_leg.peer_der,
                        (self._facts.dst_ip, self._facts.dst_port), self.runtime.mesh)
        bridge = TlsBridge(self._client, self._client_leg, gate)
        self._client.set_protocol(bridge)
        self._listener.http_handoff(bridge, self.record.peer)
        bridge.deliver(plain)

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
        self._enter(PREREAD)
        self._candidates = candidates
        self._timer = self._loop.call_later(self.runtime.preread_timeout, self._preread_expired)

    def _preread_data(self, data: bytes) -> None:
        self._preread += data
        seen = parse_client_hello(bytes(self._preread))
        if seen.status is HelloStatus.NEED_MORE and len(self._preread) <= MAX_HELLO:
            return
        self._decide(seen)

    def _preread_expired(self) -> None:
        if self._state is PREREAD:
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
        self._enter(CONNECTING)
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
        self._enter(CONNECTING)
        self._arm_idle(self._service.idle_timeout)
        self._task = self._loop.create_task(self._dial(self._service, pending))
        if early:
            self._from_client(early)
