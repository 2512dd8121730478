"""An HTTP/1.1 client's request to a gRPC service: the exchange's call over an HTTP/2 leg.

gRPC services speak HTTP/2 only. Browsers and REST clients reach them over HTTP/1.1 through the
grpc-web and grpc-gateway plugins, which buffer the request and rewrite it into a gRPC call
(as Kong's nginx `grpc_pass` does for any downstream protocol). The exchange keeps the client
side (its relay encodes the response head, runs the `response`/`body` phases, frames chunks
and logs); this bridge stands where its pooled HTTP/1.1 connection would and plays, towards
`_h2leg.H2Leg`, the part an HTTP/2 client stream plays.

Rules:
- Only a request whose body is whole is bridged (`bridgeable`): the body goes in one piece, the
  client sends nothing more.
- Tries: a connect failure goes to the next peer while the service's `retries` last, as for
  HTTP/2 clients; after the response head went out a failure cuts the client connection.
- Flow control: response DATA is acknowledged upstream once written to the client transport,
  and not while that transport is paused (the exchange forwards pause/resume to
  `transport.pause_reading` / `resume_reading`, which this bridge is).
- The leg does the balancer bookkeeping (on_connect, on_release, report); the exchange's relay
  is never handed this bridge as a connection to release.
"""
from __future__ import annotations

import logging
from typing import Any

from .. import _tries
from .._errors import error_body, failure_body
from .._headers import upstream_request_headers
from .._pipeline import upstream_host, upstream_target
from ._h2leg import H2Leg

__all__ = ["H1Bridge", "bridgeable"]

log = logging.getLogger("meshway.proxy")
_NO_PEER = "failure to get a peer from the ring-balancer"


def bridgeable(ex: Any) -> bool:
    """Whether an exchange's request can go to a gRPC service now: its body is all here."""
    ctx = ex.ctx
    return ctx is not None and (ctx.body_replaced or ex.req.read_whole())


class _Head:
    """What a leg reads of the client's request head."""

    __slots__ = ("content_length", "te_trailers")

    def __init__(self, length: int):
        self.content_length = length
        self.te_trailers = True


class H1Bridge:
    """One HTTP/1.1 exchange's call to a gRPC service through an `H2Leg`."""

    grpc = True
    req_done = True
    req_trailers = None
    closed = False
    paused = False
    unacked = 0
    t_headers = 0.0

    def __init__(self, ex: Any):
        self.ex = ex
        self.target = ex.target
        self.loop = ex.loop
        self.worker = ex.worker
        ctx, req = ex.ctx, ex.req
        self.body = (ctx.body or b"") if ctx.body_replaced else b"".join(req.buffer)
        req.buffer.clear()
        req.buffered = 0
        self.req = _Head(len(self.body))
        self.req_buf: list[bytes] = []
        self.req_size = len(self.body)
        self.tried: set = set()
        self.leg: H2Leg | None = None
        self.exchange = ex
        self.transport = self  # the exchange pauses a connection's transport when its client is slow
        self.server = self  # the upstream connection flushes its streams' servers after each read

    @property
    def t_sent(self) -> float:
        return self.ex.t_sent

    # -- tries --------------------------------------------------------------------------------
    def start(self) -> None:
        ex = self.ex
        service = self.target.service
        peer = _tries.pick(ex.ctx, service, self.tried)  # a bridged request always has a Context
        if peer is None:
            status, why = ex.last_error or (503, _NO_PEER)
            ex.respond(status, failure_body(status, why) if ex.last_error else error_body(503, why))
            return
        ex.peer = peer
        ex.tries += 1
        ex.conn = self
        ex.req_sent = True  # the whole body goes with the head: nothing for client_body_done to end
        self.leg = H2Leg(self, peer)
        self.leg.start()

    def upstream_headers(self) -> tuple[str, bytes, list[tuple[bytes, bytes]]]:
        """Method, request target and header list (Host first) for the upstream, as a stream's."""
        ex = self.ex
        ctx, target = ex.ctx, self.target
        path = upstream_target(target, ex.match, ex.query, ctx.upstream_path, ctx.upstream_query)
        ctx.upstream_uri = path.decode("latin-1")
        host = upstream_host(target, ex.peer, ex.req.host).encode("latin-1")
        headers = ctx.headers
        if ex.req.expect:  # answered (or not) by this proxy, never forwarded: as the HTTP/1.1 exchange does
            headers = [h for h in headers if h[0].lower() != b"expect"]
        return ctx.method, path, upstream_request_headers(headers, host, ex._forwarded(), via=self.worker.via)

    def replaced_body(self) -> bytes:
        return self.body

    def up_ready(self) -> None:
        self.ex.t_sent = self.loop.time()
        if self.leg is not None:
            self.leg.end(None)

    def up_drained(self) -> None:
        pass  # the body went in one piece: nothing waits for the leg's window

    def up_failed(self, status: int, why: str, retry: bool, same_peer: bool = False) -> None:
        ex = self.ex
        peer = ex.peer
        self.leg = None
        if ex.done:
            return
        log.error("upstream %s:%s for %s %s: %s", peer.host, peer.port, ex.req.method, ex.path, why)
        ex.conn = None
        if not same_peer:
            self.tried.add(peer)
        ex.last_error = (status, why)
        if ex.response_started:
            ex._fail_after_head()
            return
        _tries.failed(ex.ctx, status, connecting=retry)
        if retry and ex.tries <= self.target.service.retries:
            self.start()
        else:
            ex.respond(status, failure_body(status, why))

    def flush(self) -> None:
        self.ex.flush()

    # -- response -------------------------------------------------------------------------------
    def up_head(self, status: int, raw: list[tuple[bytes, bytes]], ended: bool) -> None:
        ex = self.ex
        if self._gone():
            return
        self.t_headers = self.loop.time()
        ex.conn = None  # a response phase's exit releases the exchange's connection: not this bridge
        ex.on_up_headers(status, False, raw, b"")
        if ex.done:  # answered instead (an exit in the response phase)
            self._abort_leg()
            return
        ex.conn = self
        if ended:
            self.up_end(None)

    def up_data(self, data: bytes) -> None:
        if self._gone():
            return
        self.ex.on_up_body(data)
        if self.paused:
            self.unacked += len(data)
        elif self.leg is not None:
            self.leg.consumed(len(data))

    def up_end(self, trailers: list | None) -> None:
        ex = self.ex
        if self._gone():
            return
        leg, self.leg = self.leg, None
        if leg is not None:
            leg.finish()  # the leg reports to the balancer and frees its upstream stream
        ex.conn = None
        ctx = ex.ctx
        ctx.response_trailers = trailers
        ex.on_up_complete(None)

    def _gone(self) -> bool:
        """The exchange ended without this leg (the client left): drop the upstream stream."""
        if self.ex.done or self.ex.server.closed:
            self._abort_leg()
            return True
        return False

    def _abort_leg(self) -> None:
        leg, self.leg = self.leg, None
        if leg is not None:
            leg.abort()

    # -- as the exchange's upstream connection ----------------------------------------------------
    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        n, self.unacked = self.unacked, 0
        if n and self.leg is not None:
            self.leg.consumed(n)

    def abort(self) -> None:
        self._abort_leg()

    def close(self) -> None:
        self._abort_leg()

    def write(self, data: bytes) -> None:
        pass  # never called: a bridged request's body is whole before the bridge starts
