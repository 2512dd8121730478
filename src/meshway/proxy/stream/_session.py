"""One stream connection: original destination, preread, route, dial, relay, log.

The session is one protocol object made of two parts: `_preread.Routing` (PROXY header, preread,
route, mesh checks) and `_relay.Relay` (dial, relay, half-close); this module holds its state
table, the client transport's events and the end (`_finish`).

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

from ._log import BAD_PROXY_HEADER, CLIENT_CLOSED, CLIENT_RESET, NO_ROUTE, ConnectionRecord, emit
from ._plugins import StreamContext, tls_info
from ._preread import Routing, final_verdict
from ._relay import Relay
from ._router import ConnectionFacts, StreamRoute
from ._states import CONNECTING, DONE, NEW, PREREAD, PROXYHDR, RELAY
from ._targets import Hop

__all__ = ["ListenerContext", "StreamSession"]

PROXY_HEADER_TIMEOUT = 5.0  # a balancer sends it at once; anything slower is not one
# What bytes from the client mean in each state: the session's transition table for its input.
_CLIENT_BYTES = {
    NEW: "_drop", PROXYHDR: "_proxy_header_data", PREREAD: "_preread_data", CONNECTING: "_from_client",
    RELAY: "_from_client", DONE: "_drop",
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


class StreamSession(Routing, Relay, asyncio.Protocol):
    """The client connection's protocol and the state of the whole relay."""

    def __init__(self, listener: ListenerContext) -> None:
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self._enter(NEW)
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
            self._enter(PROXYHDR)
            self._timer = self._loop.call_later(PROXY_HEADER_TIMEOUT, self._finish, BAD_PROXY_HEADER, "timeout")
            return
        self._route(facts)

    def data_received(self, data: bytes) -> None:
        self._last = self._loop.time()
        self._on_client_bytes(data)

    def eof_received(self) -> bool:
        if self._state is PROXYHDR:
            self._finish(BAD_PROXY_HEADER, "client closed before the header ended")
        if self._state is PREREAD:
            self._decide(final_verdict(bytes(self._preread)))
        if self._state is not DONE:
            self._client_ended()
        return True

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

    # ---- ending ------------------------------------------------------------------------

    def _finish(self, reason: str, detail: str | None = None) -> None:
        if self._state is DONE:
            return
        self._enter(DONE)
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
