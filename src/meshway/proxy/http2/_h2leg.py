"""One client stream's exchange with an HTTP/2 upstream (gRPC services), over `_h2up`'s pool.

Rules:
- Frames -> stream: response HEADERS -> `Stream.up_head`; DATA -> `up_data` (acknowledged
  upstream only once the client's stream took it: `consumed`); trailers + END_STREAM ->
  `up_end`; RST_STREAM -> 502 (REFUSED_STREAM before the head: another try on the same peer).
- Request DATA goes out within the upstream's windows; what does not fit waits here
  (`backlog`), and the client's stream acknowledges nothing while it is high. Client trailers
  are forwarded; `te: trailers` is sent for gRPC.
- Read timeout: from the request head until the stream ends, refreshed by every frame of the
  stream, one lazy timer per leg; on expiry the upstream stream is reset (CANCEL) -> 504.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from typing import Any

import h2.errors
import h2.events
import h2.exceptions

from .._errors import connect_failure
from ._h2up import H2Upstream, pool_for
from ._headers import encode_upstream_request

__all__ = ["H2Leg"]

log = logging.getLogger("meshway.proxy")


class H2Leg:
    """One stream's exchange with an HTTP/2 upstream."""

    def __init__(self, stream: Any, peer: Any):
        self.stream = stream
        self.peer = peer
        self.service = stream.target.service
        self.loop = stream.loop
        self.conn: H2Upstream | None = None
        self.starting: Any = None
        self.sid = 0
        self.ready = False
        self.pending: collections.deque[bytes] = collections.deque()
        self.backlog = 0
        self.ending = False
        self.trailers: list | None = None
        self.ended = False
        self.write_paused = False
        self.got_head = False
        self.complete = False
        self.status = 0
        self.deadline = 0.0
        self.timer: Any = None

    # -- connect
    def start(self) -> None:
        peer = self.peer
        conn = pool_for(self.stream.worker).ready_with_room((peer.host, peer.port, self.service.pool_key, "h2"))
        if conn is None:
            self.starting = self.loop.create_task(self._start())
            return
        conn.reserved += 1  # a connection ready with room: the stream opens now, no Task (`open` unbooks it)
        self._open(conn, *self.stream.upstream_headers())

    async def _start(self) -> None:
        service, stream, peer = self.service, self.stream, self.peer
        method, target, headers = stream.upstream_headers()
        host = headers[0][1].decode("latin-1")
        key = (peer.host, peer.port, service.pool_key, "h2")
        try:
            conn = await pool_for(stream.worker).acquire(key, peer.host, peer.port, service.connect_timeout,
                                                         service.ssl, host.rsplit(":", 1)[0])
        except asyncio.TimeoutError:
            self._connect_failed(504, "timeout", timeout=True)
            return
        except (OSError, ssl.SSLError, ConnectionError) as e:
            self._connect_failed(*connect_failure(e), tcp_failure=True)
            return
        if stream.leg is not self or conn.closed:
            conn.reserved = max(0, conn.reserved - 1)
            if stream.leg is self:
                self._connect_failed(502, "upstream connection closed", tcp_failure=True)
            return
        self._open(conn, method, target, headers)
        stream.flush()

    def _connect_failed(self, status: int, why: str, **report: Any) -> None:
        self.service.balancer.report(self.peer, **report)
        if self.stream.leg is self:
            self.stream.up_failed(status, why, retry=True)
            self.stream.flush()

    def _open(self, conn: H2Upstream, method: str, target: bytes, headers: list) -> None:
        stream = self.stream
        replaced = stream.replaced_body()
        length = len(replaced) if replaced is not None else stream.req.content_length
        scheme = "https" if self.service.ssl is not None else "http"
        # `te: trailers` always: legs reach gRPC services only, and gRPC requires it even when the
        # client's request was not gRPC (grpc-gateway's JSON, grpc-web over HTTP/1.1).
        block = encode_upstream_request(method, scheme, target, headers, length, True)
        bodyless = stream.req_done and not stream.req_buf and not stream.req_trailers and not replaced
        self.conn = conn
        self.sid = conn.open(self, block, bodyless)
        self.ended = bodyless
        self.service.balancer.on_connect(self.peer)
        self.ready = True
        self._arm()
        if replaced:
            self.send(replaced)
        stream.up_ready()
        conn.write()

    # -- request body (from the stream)
    def send(self, data: bytes) -> None:
        if self.ended:
            return
        self.pending.append(data)
        self.backlog += len(data)
        self.push()

    def end(self, trailers: list | None) -> None:
        if self.ended:
            return
        self.ending = True
        self.trailers = trailers
        self.push()

    def push(self) -> None:
        conn = self.conn
        if conn is None or conn.closed or self.ended:
            return
        c = conn.h2
        try:
            while self.pending and not self.write_paused:
                window = c.sendable(self.sid)
                if window <= 0:
                    break
                chunk = self.pending[0]
                n = min(window, len(chunk))
                c.send_data(self.sid, chunk[:n] if n < len(chunk) else chunk)
                self.backlog -= n
                if n < len(chunk):
                    self.pending[0] = chunk[n:]
                else:
                    self.pending.popleft()
            if self.ending and not self.pending:
                self.ended = True
                if self.trailers:
                    c.send_headers(self.sid, [(k, v) for k, v in self.trailers if k[:1] != b":"], end_stream=True)
                else:
                    c.end_stream(self.sid)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as e:
            log.info("upstream stream %s: request body not sent: %r", self.sid, e)
            self.pending.clear()
            self.backlog = 0
            self.ended = True
        conn.write()
        self.stream.up_drained()

    # -- response (from the connection)
    def on_head(self, ev: Any) -> None:
        self._arm()
        status, headers = 0, []
        for name, value in ev.headers:
            if name == b":status":
                status = int(value)
            elif name[:1] != b":":
                headers.append((name, value))
        self.got_head = True
        self.status = status
        ended = ev.stream_ended is not None
        if ended:
            self._complete()
        self.stream.up_head(status, headers, ended)

    def on_data(self, ev: Any) -> None:
        self._arm()
        padding = ev.flow_controlled_length - len(ev.data)
        if padding:
            self.conn.h2.acknowledge_received_data(padding, self.sid)
        self.stream.up_data(ev.data)

    def on_trailers(self, ev: Any) -> None:
        self._complete()
        self.stream.up_end(list(ev.headers))

    def on_end(self, ev: Any) -> None:
        if not self.complete and self.got_head:
            self._complete()
            self.stream.up_end(None)

    def on_reset(self, ev: Any) -> None:
        if self.complete:
            return
        code = ev.error_code
        if self.conn is not None:
            self.conn.release(self.sid)
        self.conn = None
        refused = code == h2.errors.ErrorCodes.REFUSED_STREAM
        self.failed(502, f"upstream reset the stream ({code!r})", retry=refused, same_peer=refused)

    def consumed(self, n: int) -> None:
        conn = self.conn
        if conn is not None and not conn.closed and n:
            try:
                conn.h2.acknowledge_received_data(n, self.sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                return
            conn.write()

    def pause(self) -> None:
        pass  # unacknowledged DATA is the pause

    def resume(self) -> None:
        pass

    def retryable(self) -> bool:
        return not self.got_head and not self.stream.req_size

    def failed(self, status: int, why: str, retry: bool, same_peer: bool = False) -> None:
        self._disarm()
        if self.ready:
            self.service.balancer.on_release(self.peer)
        self.conn = None
        if not same_peer:
            self.service.balancer.report(self.peer, tcp_failure=True)
        if self.stream.leg is self:
            self.stream.up_failed(status, why, retry=retry and self.retryable(), same_peer=same_peer)
            self.stream.flush()

    def _complete(self) -> None:
        self.complete = True
        self._disarm()

    # -- read timeout
    def _arm(self) -> None:
        self.deadline = self.loop.time() + self.service.read_timeout
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._check)

    def _disarm(self) -> None:
        self.deadline = 0.0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        self.timer = None
        if not self.deadline or self.complete:
            return
        if self.loop.time() < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._check)
            return
        conn = self.conn
        if conn is not None:
            conn.h2.reset_stream(self.sid, h2.errors.ErrorCodes.CANCEL)
            conn.write()
            conn.release(self.sid)
        self.service.balancer.report(self.peer, timeout=True)
        self.conn = None
        if self.stream.leg is self:
            self.stream.up_failed(504, "upstream timed out while reading response", retry=False)
            self.stream.flush()

    # -- endings (from the stream)
    def finish(self, now: float | None = None) -> None:  # (now: the H1Leg's interface)
        self._disarm()
        conn, self.conn = self.conn, None
        if conn is None:
            return
        stream = self.stream
        balancer = self.service.balancer
        balancer.on_release(self.peer)
        balancer.report(self.peer, status=self.status or None,
                        latency_ms=(stream.t_headers - stream.t_sent) * 1000 if stream.t_headers else None)
        if not (self.complete and self.ended) and not conn.closed:
            try:
                conn.h2.reset_stream(self.sid, h2.errors.ErrorCodes.CANCEL)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass
            conn.write()
        conn.release(self.sid)

    def abort(self) -> None:
        if self.starting is not None and not self.ready:
            self.starting.cancel()
        self.complete = False  # the client went away: reset the upstream stream too
        self.finish()


    def on_event(self, ev: Any) -> None:
        handler = _LEG_EVENTS.get(type(ev))
        if handler is not None:
            handler(self, ev)


_LEG_EVENTS = {
    h2.events.ResponseReceived: H2Leg.on_head,
    h2.events.DataReceived: H2Leg.on_data,
    h2.events.TrailersReceived: H2Leg.on_trailers,
    h2.events.StreamEnded: H2Leg.on_end,
    h2.events.StreamReset: H2Leg.on_reset,
}
