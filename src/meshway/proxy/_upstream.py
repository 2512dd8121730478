"""Upstream HTTP/1.1 connections and their keep-alive pools.

Rules:
- A pool holds idle connections per (host, port, tls key), newest first, at most
  `upstream_keepalive_pool_size` each; a connection serves at most
  `upstream_keepalive_max_requests` requests and idles at most `upstream_keepalive_idle_timeout`.
- A connection goes back to the pool only when the response said keep-alive (read when the
  headers completed: httptools resets after the message), the whole response was read and the
  whole request body was sent. HEAD responses and tunnels are never pooled.
- Each connection is bound to at most one exchange; the exchange gets the parser callbacks.
- Reads land in one worker-wide 64 KiB buffer (`_READ_VIEW`): a client that stops reading
  makes the worker hold at most one such read besides its transport's high-water mark, as the
  exchange pauses this connection's reading (`client_pause_writing`).
- The read timeout runs from the request being sent until the response completes, refreshed by
  every read, checked by one lazy timer per connection (no timer churn per read).
- A server-speaks-first upstream (ncat `--sh-exec`) may answer, and even close, between the
  connect and the moment an exchange binds the connection: `bind()` writes the request only to
  a connection still open (uvloop raises on a closed transport, which would strand the
  exchange), then replays the early bytes and the close. Such a connection is never pooled: its
  answer did not follow a request. Bytes on an idle pooled connection answer nothing: it closes.
"""
from __future__ import annotations

import asyncio
import socket
from typing import Any

import httptools

from . import _core
from ._tls import check_verify_depth
from .netutil import bind_source_socket

__all__ = ["UpstreamConn", "Pool"]


# Every upstream connection of a worker reads into this one buffer (asyncio's BufferedProtocol):
# a read is handled whole before the next one starts, and httptools hands out copies. Its size
# caps one read, hence what a slow client can make the worker hold: the last read before the
# upstream pauses, on top of the client transport's high-water mark (uvloop reads 256 KiB).
_READ_SIZE = 64 * 1024
_READ_VIEW = memoryview(bytearray(_READ_SIZE))


class UpstreamConn(asyncio.BufferedProtocol):
    """One connection to an upstream peer, pooled between exchanges."""

    __slots__ = ("pool", "key", "transport", "parser", "exchange", "requests", "idle_since", "closed",
                 "deadline", "timer", "loop", "timeout", "reused", "got_bytes", "tunnel", "headers", "reason",
                 "mesh_peer", "early", "early_eof", "spoke_first", "relay")

    def __init__(self, pool: "Pool", key: tuple):
        self.pool = pool
        self.key = key
        self.transport: Any = None
        self.parser = _core.response_parser(self)  # compiled or httptools (_core)
        # The compiled parser's relay to an exchange (`_h1parse.ResponseParser.relay`); None on httptools
        self.relay = getattr(self.parser, "relay", None)
        self.exchange: Any = None
        self.requests = 0
        self.idle_since = 0.0
        self.closed = False
        self.deadline = 0.0
        self.timer: Any = None
        self.loop = pool.loop
        self.timeout = 0.0
        self.reused = False
        self.got_bytes = False
        self.tunnel = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.mesh_peer: str | None = None  # the other sidecar's SPIFFE id when this is a mesh hop
        self.early = b""  # what a server-speaks-first upstream (ncat) sent before a request was bound
        self.early_eof = False
        self.spoke_first = False  # it answered before a request: never pooled

    # -- asyncio
    def connection_made(self, transport: Any) -> None:
        # (TCP_NODELAY: the loop's TCP transports set it, uvloop's and asyncio's alike)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        ex = self.exchange
        if ex is None or self.tunnel:  # kept or passed on as they are: a copy, the buffer is reused
            self.data_received(bytes(_READ_VIEW[:nbytes]))
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(_READ_VIEW[:nbytes])
        except httptools.HttpParserUpgrade as e:
            self.tunnel = True
            rest = bytes(_READ_VIEW[e.args[0]:nbytes]) if e.args else b""
            if self.exchange is not None:
                self.exchange.upstream_upgraded(self, rest)
        except httptools.HttpParserError as e:
            self._invalid(e)
        if self.timeout:  # still waiting for the rest: the read timeout restarts from this read
            self.deadline = self.loop.time() + self.timeout  # (after the feed: a complete answer disarms)
        ex.flush()

    def _invalid(self, e: Exception) -> None:
        bound = self.exchange
        self.close()
        if bound is not None:
            bound.upstream_failed(self, "invalid", f"invalid response: {e}")

    def data_received(self, data: bytes) -> None:
        """What `buffer_updated` does, for bytes (early answers, tunnels, in-process harnesses)."""
        ex = self.exchange
        if ex is None:
            if self.requests == 0:  # not bound yet: kept for the exchange (see bind)
                self.early += data
            else:  # idle in the pool: an answer to no request (a 408 before a close, say)
                self.close()
            return
        self.got_bytes = True
        if self.tunnel:
            ex.tunnel_from_upstream(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.tunnel = True
            rest = data[e.args[0]:] if e.args else b""
            if self.exchange is not None:
                self.exchange.upstream_upgraded(self, rest)
        except httptools.HttpParserError as e:
            self._invalid(e)
        if self.timeout:  # still waiting for the rest: the read timeout restarts from this read
            self.deadline = self.loop.time() + self.timeout  # (after the feed: a complete answer disarms)
        if ex is not None:
            ex.flush()

    def eof_received(self) -> bool | None:
        return None

    def bind(self, exchange: Any, head: bytes, timeout: float = 0.0, now: float = 0.0) -> None:
        """Give the connection to `exchange` and send the request `head` (with any body so far);
        with a `timeout` (the whole request went), arm the read timeout from `now` (`arm`) unless
        an early answer already ended the exchange. (`Exchange.send` does it inline for a whole
        request on an open connection: keep both in step.)"""
        self.exchange = exchange
        self.requests += 1
        if not self.closed:
            self.transport.write(head)
        if self.early or self.early_eof:
            self._replay()
            if timeout and not exchange.done:
                self.arm(timeout, now)
        elif timeout:  # `arm`, inlined: this runs per request
            self.timeout = timeout
            self.deadline = now + timeout
            if self.timer is None:
                self.timer = self.loop.call_at(self.deadline, self._check)

    def _replay(self) -> None:
        """Hand what arrived before the exchange was bound to it, then the close if it came too."""
        self.spoke_first = True
        early, self.early = self.early, b""
        if early:
            self.data_received(early)
        if self.early_eof and self.exchange is not None:
            self.exchange.upstream_lost(self, None)

    def write(self, data: bytes) -> None:
        """Send more of the request; nothing once the connection closed (see bind)."""
        if not self.closed:
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self.exchange is None and self.requests == 0:
            self.early_eof = True
        self.pool.forget(self)
        ex = self.exchange
        if ex is not None:
            if self.tunnel:
                ex.tunnel_closed(self)
                return
            ex.upstream_lost(self, exc)  # also where a close-delimited body ends

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_resume_writing()

    # -- httptools callbacks: the head is collected here, the rest goes to the exchange
    def on_message_begin(self) -> None:
        self.headers = []
        self.reason = b""

    def on_status(self, status: bytes) -> None:
        self.reason = self.reason + status if self.reason else status  # a reason split over reads

    def on_head(self, status: int, keep_alive: bool, headers: list, reason: bytes, encoded: tuple | None) -> None:
        """The compiled parser's one call per response head (the callbacks around it in one), with
        the head's wire lines for a client when it could encode them (see `_relay.on_up_headers`)."""
        self.headers = headers
        self.reason = reason
        self.exchange.on_up_headers(status, keep_alive, headers, reason, encoded)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        p = self.parser
        self.exchange.on_up_headers(p.get_status_code(), p.should_keep_alive(), self.headers, self.reason)

    def on_body(self, body: bytes) -> None:
        self.exchange.on_up_body(body)

    def on_message_complete(self) -> None:
        if self.exchange is not None:
            self.exchange.on_up_complete(self)

    # -- timeouts
    def arm(self, timeout: float, now: float | None = None) -> None:
        """Start (or refresh) the read timeout for the exchange in progress (`now`: loop.time())."""
        self.timeout = timeout
        self.deadline = (self.loop.time() if now is None else now) + timeout
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._check)

    def disarm(self) -> None:
        self.timeout = 0.0

    def _check(self) -> None:
        self.timer = None
        if not self.timeout or self.closed:
            return
        now = self.loop.time()
        if now < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._check)
            return
        ex = self.exchange
        self.close()
        if ex is not None:
            ex.upstream_failed(self, "timeout", "upstream timed out while reading response")

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._cancel_timer()
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self._cancel_timer()
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()


class Pool:
    """Idle upstream connections of one worker, keyed by peer and TLS settings."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, max_requests: int, idle_timeout: float,
                 source: tuple[str, int] | None = None):
        self.loop = loop
        self.size = size
        self.max_requests = max_requests
        self.idle_timeout = idle_timeout
        self.source = source
        # per key, its idle connections oldest first: a dict used as an ordered set, so that
        # forgetting one (every close) is not a scan of up to `size` of them
        self.idle: dict[tuple, dict[UpstreamConn, None]] = {}
        self.created = 0
        self.sweeper = loop.call_later(max(1.0, idle_timeout / 2), self._sweep) if idle_timeout > 0 else None

    def take(self, key: tuple, now: float | None = None) -> UpstreamConn | None:
        """An idle connection for `key`, or None; `now` (loop.time()) saves a clock read."""
        conns = self.idle.get(key)
        if not conns:
            return None
        limit = (self.loop.time() if now is None else now) - self.idle_timeout
        while conns:
            conn = conns.popitem()[0]  # the newest
            if conn.closed:
                continue
            if conn.idle_since < limit:
                conn.close()
                continue
            conn.reused = True
            conn.got_bytes = False
            conn.transport.resume_reading()
            return conn
        return None

    def put(self, conn: UpstreamConn, now: float | None = None) -> None:
        # (`ResponseRelay._relayed_end` appends a connection that stays inline: keep both in step)
        conn.exchange = None
        conn.timeout = 0.0  # disarmed
        if conn.closed or self.size <= 0 or conn.requests >= self.max_requests or conn.tunnel or conn.spoke_first:
            conn.close()
            return
        conns = self.idle.get(conn.key)
        if conns is None:
            conns = self.idle[conn.key] = {}
        elif len(conns) >= self.size:
            oldest = next(iter(conns))
            del conns[oldest]
            oldest.close()
        conn.idle_since = self.loop.time() if now is None else now
        conns[conn] = None

    def forget(self, conn: UpstreamConn) -> None:
        conns = self.idle.get(conn.key)
        if conns:
            conns.pop(conn, None)

    async def connect(self, key: tuple, host: str, port: int, timeout: float, ssl: Any = None,
                      server_hostname: str | None = None, source: tuple[str, int] | None = None) -> UpstreamConn:
        """A new connection (no pool lookup); raises OSError or asyncio.TimeoutError. `source`: the
        mesh's source for this hop (a hop to our own app leaves from 127.0.0.6), over proxy_bind's."""
        source = source or self.source
        kw: dict[str, Any] = {}
        if ssl is not None:
            kw["ssl"] = ssl
            kw["server_hostname"] = server_hostname or host
        conn_holder: list[UpstreamConn] = []

        def factory() -> UpstreamConn:
            conn = UpstreamConn(self, key)
            conn_holder.append(conn)
            return conn

        # asyncio.timeout, not wait_for: in the caller's task (wait_for wraps the dial in a task
        # of its own, with its futures and callbacks, for every new upstream connection)
        async with asyncio.timeout(timeout):
            if source is None:
                await self.loop.create_connection(factory, host, port, **kw)
            else:  # proxy_bind: the source address without reserving a port per bind (netutil)
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = bind_source_socket(source, family)
                try:
                    await self.loop.sock_connect(sock, (host, port))
                except BaseException:
                    sock.close()
                    raise
                await self.loop.create_connection(factory, sock=sock, **kw)
        self.created += 1
        conn = conn_holder[0]
        if ssl is not None:
            try:
                check_verify_depth(conn.transport, ssl)
            except BaseException:
                conn.close()
                raise
        return conn

    def _sweep(self) -> None:
        limit = self.loop.time() - self.idle_timeout
        for conns in list(self.idle.values()):
            for conn in [c for c in conns if c.idle_since < limit]:
                conn.close()
        self.sweeper = self.loop.call_later(max(1.0, self.idle_timeout / 2), self._sweep)

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        for conns in list(self.idle.values()):
            for conn in list(conns):
                conn.close()
        self.idle.clear()

    def stats(self) -> dict[str, int]:
        return {"created": self.created, "idle": sum(len(c) for c in self.idle.values())}
