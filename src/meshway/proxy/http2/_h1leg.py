"""An HTTP/2 stream's request translated to HTTP/1.1, over the worker's upstream pool.

Rules:
- The leg takes the exchange's place on a pooled `UpstreamConn` (same callbacks), so keep-alive,
  the read timeout and the pool's accounting are the HTTP/1.1 ones.
- Request framing: a body a plugin replaced -> its Content-Length; the client's content-length
  -> Content-Length; a request already complete -> Content-Length of what was buffered (none
  for a bodiless GET/HEAD/DELETE/OPTIONS); otherwise chunked. Client trailers are dropped.
- Response: 1xx are skipped; a HEAD answer completes at its head (the connection is not
  reused, as in HTTP/1.1); the body goes to the stream, which frames it.
- Back-pressure: the upstream socket is paused while the stream holds data the client's window
  refused (`pause`/`resume`); `backlog` is high while the upstream socket's buffer is full.
- A connection goes back to the pool only after a complete response to a completely sent
  request; a pooled connection that closed before answering is replaced once by a new one.
"""
from __future__ import annotations

import asyncio
import ssl
from typing import Any

from .. import _core, _tries
from .._errors import connect_failure
from .._runtime import origin_context

__all__ = ["H1Leg"]

_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_FULL = 1 << 30


class H1Leg:
    """One stream's HTTP/1.1 exchange with one upstream peer."""

    # Fields only ever reassigned start as class attributes: no store per request.
    conn: Any = None
    connecting: Any = None
    ready = False
    chunked = False
    req_sent = False
    write_paused = False
    paused = False
    keep_alive = False
    interim = False
    complete = False
    status = 0

    def __init__(self, stream: Any, peer: Any):
        self.stream = stream
        self.peer = peer
        self.service = service = stream.target.service
        self.worker = stream.worker
        runtime = stream.runtime
        origins = runtime.origins  # the node's `origins` (`origin_of`), as HTTP/1.1 applies them
        origin = origins.get((service.scheme, peer.host, peer.port)) if origins else None
        if origin is None:
            self.host, self.port, self.tls = peer.host, peer.port, service.ssl
            self.key: tuple = service.fixed_key or (peer.host, peer.port, service.pool_key)
        else:
            self.host, self.port = origin[1], origin[2]
            self.tls, self.key = origin_context(runtime, service, origin), origin

    @property
    def backlog(self) -> int:
        return _FULL if self.write_paused else 0

    # -- connect
    def start(self) -> None:
        conn = self.worker.pool.take(self.key)
        if conn is None:
            self.connecting = self.stream.loop.create_task(self._connect())
            return
        stream = self.stream
        if stream.ctx is not None or not stream.req_done or stream.req_buf or stream.unacked:
            self._bind(conn)
            return
        # `_bind`, `up_ready` and `end` in one for a request complete with its head and no
        # Context (a GET without plugins): head out, read timeout armed, one clock read.
        self.conn = conn
        service = self.service
        if service.tracked:
            service.balancer.on_connect(self.peer)
        head = None
        core = _core.compiled
        if core is not None and stream.server.codec is not None:  # `_encode_head` for this request
            req = stream.req
            length = req.content_length
            if length is None:  # `_length` with nothing buffered
                length = -1 if req.method in _BODYLESS else 0
            head = stream.upstream_head(core, length)
        if head is None:
            head = self._encode_head()
        self.ready = True
        conn.bind(self, head)
        if self.conn is conn and stream.leg is self:
            stream.t_sent = now = stream.loop.time()
            if conn.closed:
                return
            if self.chunked:
                conn.write(b"0\r\n\r\n")
            self.req_sent = True
            timer = conn.timer
            if timer is not None and timer.when() > now + service.read_timeout:
                timer.cancel()  # (see `end`)
                conn.timer = None
            conn.arm(service.read_timeout, now)

    async def _connect(self) -> None:
        service, stream = self.service, self.stream
        sni = None
        if self.tls:
            sni = stream.upstream_headers()[2][0][1].decode("latin-1").rsplit(":", 1)[0]
        try:
            conn = await self.worker.pool.connect(self.key, self.host, self.port, service.connect_timeout,
                                                  ssl=self.tls, server_hostname=sni)
        except asyncio.TimeoutError:
            self._connect_failed(504, "timeout", timeout=True)
            return
        except (OSError, ssl.SSLError) as e:
            self._connect_failed(*connect_failure(e), tcp_failure=True)
            return
        if stream.leg is not self:
            conn.close()
            return
        if stream.ctx is not None:
            _tries.connected(stream.ctx)
        self._bind(conn)
        stream.flush()

    def _connect_failed(self, status: int, why: str, **report: Any) -> None:
        self.service.balancer.report(self.peer, **report)
        if self.stream.leg is self:
            self.stream.up_failed(status, why, retry=True)
            self.stream.flush()

    def _bind(self, conn: Any) -> None:
        self.conn = conn
        self.service.balancer.on_connect(self.peer)
        head = self._encode_head()
        replaced = self.stream.replaced_body()
        self.ready = True
        # bind() may deliver an answer (and close) that a server-speaks-first upstream sent
        # before this request: only a leg still holding the connection takes the body.
        conn.bind(self, head if replaced is None else head + replaced)
        if self.conn is conn and self.stream.leg is self:
            self.stream.up_ready()

    def _encode_head(self) -> bytes:
        stream = self.stream
        core = _core.compiled
        if core is not None and stream.ctx is None and stream.server.codec is not None:
            length = stream.req.content_length
            if length is None:
                length = self._length()
            head = stream.upstream_head(core, length)  # the same bytes in one C buffer
            if head is not None:
                self.chunked = length == -2
                return head
        method, target, lines = stream.upstream_wire()
        parts = [method.encode("latin-1"), b" ", target, b" HTTP/1.1\r\n", lines]
        replaced = stream.replaced_body()
        if replaced is not None:
            parts.append(b"Content-Length: %d\r\n" % len(replaced))
        elif stream.req.content_length is not None:
            parts.append(b"Content-Length: %d\r\n" % stream.req.content_length)
        elif stream.req_done:
            size = sum(map(len, stream.req_buf))
            if size or method not in _BODYLESS:
                parts.append(b"Content-Length: %d\r\n" % size)
        else:
            self.chunked = True
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _length(self) -> int:
        """`_encode_head`'s framing for a request without plugins: a Content-Length (>= 0), -1
        none, -2 chunked (`_h1parse.request_head`'s `length`)."""
        stream = self.stream
        req = stream.req
        if req.content_length is not None:
            return req.content_length
        if stream.req_done:
            size = sum(map(len, stream.req_buf))
            return size if size or req.method not in _BODYLESS else -1
        return -2

    # -- request body (from the stream)
    def send(self, data: bytes) -> None:
        conn = self.conn
        if data and conn is not None and not conn.closed and self.stream.replaced_body() is None:
            conn.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)

    def end(self, trailers: list | None) -> None:
        conn = self.conn
        if conn is None or conn.closed or self.req_sent:
            return
        if self.chunked:
            conn.write(b"0\r\n\r\n")
        self.req_sent = True
        timer = conn.timer
        if timer is not None and timer.when() > conn.loop.time() + self.service.read_timeout:
            # A pooled connection's lazy timer may still be set for a longer timeout of an earlier
            # service on the same peer; `arm` would not bring it forward (reported to the HTTP/1.1 owner).
            timer.cancel()
            conn.timer = None
        conn.arm(self.service.read_timeout)

    # -- response back-pressure (from the stream)
    def consumed(self, n: int) -> None:
        pass

    def pause(self) -> None:
        if not self.paused and self.conn is not None and not self.conn.closed:
            self.paused = True
            self.conn.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.conn is not None and not self.conn.closed:
            self.paused = False
            self.conn.transport.resume_reading()

    # -- UpstreamConn callbacks (the exchange interface of `meshway.proxy._upstream`)
    def on_up_headers(self, status: int, keep_alive: bool, headers: list, reason: bytes = b"",
                      encoded: tuple | None = None) -> None:  # encoded: the compiled parser's HTTP/1.1 wire lines
        if 100 <= status < 200:
            self.interim = True
            return
        self.status = status
        self.keep_alive = keep_alive
        if self.stream.req.method == "HEAD":  # httptools would wait for the body a HEAD answer lacks
            self.keep_alive = False
            self._done()
            self.stream.up_head(status, headers, True)
        else:
            self.stream.up_head(status, headers, False)

    def on_up_body(self, body: bytes) -> None:
        if not self.interim and not self.complete:
            stream = self.stream
            if stream.ctx is not None or stream.done:
                stream.up_data(body)
            elif body:  # `Stream.up_data` without plugins
                out = stream.out
                if not out:
                    stream.server.dirty.append(stream)
                out.append(body)

    def on_up_complete(self, conn: Any) -> None:
        if self.interim:
            self.interim = False
            return
        if not self.complete:
            self.complete = True  # `_done`
            if self.conn is not None:
                self.conn.disarm()
            stream = self.stream
            if stream.ctx is not None or stream.done:
                stream.up_end(None)
                return
            if not stream.out:  # `Stream.up_end` without plugins or trailers
                stream.server.dirty.append(stream)
            stream.out_end = True
            stream.out_trailers = None

    def _done(self) -> None:
        self.complete = True
        if self.conn is not None:
            self.conn.disarm()

    def flush(self) -> None:
        self.stream.server.flush()

    def upstream_failed(self, conn: Any, kind: str, why: str) -> None:
        if conn is not self.conn or self.complete:
            return
        self.service.balancer.report(self.peer, timeout=kind == "timeout", status=None if kind == "timeout" else 502)
        self._drop(conn)
        self.stream.up_failed(504 if kind == "timeout" else 502, why, retry=False)
        self.stream.flush()  # called from a timer or a parse error: nothing else flushes

    def upstream_lost(self, conn: Any, exc: Exception | None) -> None:
        if conn is not self.conn or self.complete:
            return
        stale = conn.reused and not conn.got_bytes and not self.stream.req_size and self.status == 0
        self._drop(conn)
        if stale:  # a pooled connection the upstream had closed: one fresh try
            self.ready = False
            self.stream.loop.create_task(self._connect())
            return
        self.service.balancer.report(self.peer, tcp_failure=True)
        self.stream.up_failed(502, "upstream closed the connection before the response ended", retry=False)
        self.stream.flush()

    def upstream_pause_writing(self) -> None:
        self.write_paused = True

    def upstream_resume_writing(self) -> None:
        self.write_paused = False
        self.stream.up_drained()
        self.stream.flush()

    def _drop(self, conn: Any) -> None:
        self.conn = None
        conn.exchange = None
        self.service.balancer.on_release(self.peer)

    # -- endings (from the stream)
    def finish(self, now: float | None = None) -> None:
        """The stream ended: pool the connection if its exchange completed cleanly."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        conn.exchange = None
        service = self.service
        if service.tracked:  # (a fixed service's balancer, or round-robin without passive checks, keeps nothing)
            balancer = service.balancer
            balancer.on_release(self.peer)
            stream = self.stream
            balancer.report(self.peer, status=self.status or None,
                            latency_ms=(stream.t_headers - stream.t_sent) * 1000 if stream.t_headers else None)
        if self.complete and self.req_sent and self.keep_alive and not conn.closed:
            if self.paused:
                conn.transport.resume_reading()
            self.worker.pool.put(conn, now)
        else:
            conn.close()

    def abort(self) -> None:
        if self.connecting is not None and not self.ready:
            self.connecting.cancel()  # a reset stream must not cost an upstream connection
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.exchange = None
            self.service.balancer.on_release(self.peer)
            conn.abort()
