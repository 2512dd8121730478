"""A stream session's second part: dialling the upstream, relaying both ways, half-close.

`Relay` is a part of `_session.StreamSession` (the rules are in that module's docstring);
`_UpstreamSide` is the upstream transport's protocol, which hands every event to the session.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from ..meshhooks import MESH_SNI

from .. import netutil
from ._legs import PlainLeg, TlsFailure, TlsLeg
from ._log import (CLIENT_CLOSED, CLIENT_TLS_FAILED, CONNECT_FAILED, IDLE_TIMEOUT, INTERNAL_ERROR, MESH_REFUSED,
                   NO_UPSTREAM, UPSTREAM_CLOSED, UPSTREAM_RESET, UPSTREAM_TLS_FAILED)
from ._plugins import PLUGIN_EXIT
from ._states import CONNECTING, DONE, RELAY
from ._targets import Hop

HIGH_WATER = 1024 * 1024


class _UpstreamSide(asyncio.Protocol):
    """The upstream transport's protocol: hands everything to the session."""

    __slots__ = ("session",)

    def __init__(self, session: Any) -> None:
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


class Relay:
    """The session's relaying part: dial, TLS legs, bytes both ways with backpressure, half-close."""

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
            if not error or self._state is DONE:
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
        if self._state is DONE:
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
        self._enter(RELAY)
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
        if self._task is None and self._state is CONNECTING and self._client_leg.handshaken:
            if not self._mesh_peer_verified(self._client_leg, MESH_REFUSED) or not self._mesh_permitted():
                return
            if self._listener.http_handoff is not None and \
                    self.runtime.mesh.serves_http(self._facts.dst_ip, self._facts.dst_port):
                return self._hand_mesh_to_http(plain)
            self._task = self._loop.create_task(self._dial(self._service))
        if plain:
            self._to_upstream(plain)
        if self._client_leg.eof and self._state is not DONE:
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
        if self._state is DONE:
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
        if self._upstream_leg.eof and self._state is not DONE:
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
        if self._upstream_eof or self._state is DONE:
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
