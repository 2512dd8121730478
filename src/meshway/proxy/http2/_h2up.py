"""HTTP/2 upstreams (gRPC services): multiplexed connections and their pool (legs: `_h2leg`).

Rules:
- `grpc` services are spoken to in h2c (prior knowledge), `grpcs` ones over TLS with ALPN `h2`.
- One connection carries many streams: a leg goes to the first open connection of its peer
  with room (`min(peer's SETTINGS_MAX_CONCURRENT_STREAMS, _MAX_STREAMS)` minus streams open or
  promised); when every one is full a new connection is opened. A connection that received
  GOAWAY takes no new streams; one without streams for `upstream_keepalive_idle_timeout` closes.
- A connection is usable once the peer's SETTINGS arrived (so its stream limit is known), within
  the service's connect_timeout; legs booked beyond that limit look again. A leg that finds a
  usable connection with room opens its stream at once (`ready_with_room`), without a Task.
- Frames of a stream go to its leg (`H2Leg.on_event`); WINDOW_UPDATE / SETTINGS push pending
  request data; GOAWAY -> streams above its last id fail and may be retried; a protocol error or
  a lost connection fails every leg on it.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import weakref
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from ._h2conn import FastH2Connection
from ._hpack import FastEncoder

__all__ = ["H2Pool", "H2Upstream", "pool_for"]

log = logging.getLogger("meshway.proxy")
_MAX_STREAMS = 100
_STREAM_WINDOW = 1 << 20
_CONN_WINDOW = 16 << 20
_POOLS: "weakref.WeakKeyDictionary[Any, H2Pool]" = weakref.WeakKeyDictionary()
_H2_CONTEXTS: "weakref.WeakSet[ssl.SSLContext]" = weakref.WeakSet()


def pool_for(worker: Any) -> "H2Pool":
    """The worker's HTTP/2 upstream pool (made on first use)."""
    pool = _POOLS.get(worker)
    if pool is None:
        settings = worker.settings
        pool = _POOLS[worker] = H2Pool(worker.loop, settings.upstream_keepalive_idle_timeout,
                                       worker.pool.source)
    return pool


def _h2_context(ctx: ssl.SSLContext) -> ssl.SSLContext:
    # A grpcs service's client context is only used for HTTP/2: offer h2 (compile offers http/1.1).
    if ctx not in _H2_CONTEXTS:
        ctx.set_alpn_protocols(["h2"])
        _H2_CONTEXTS.add(ctx)
    return ctx


class H2Upstream(asyncio.Protocol):
    """One HTTP/2 connection to an upstream peer, shared by many legs."""

    def __init__(self, pool: "H2Pool", key: tuple):
        self.pool = pool
        self.key = key
        self.loop = pool.loop
        self.transport: Any = None
        self.legs: dict[int, H2Leg] = {}
        self.reserved = 0
        self.max_streams = _MAX_STREAMS
        self.closed = False
        self.draining = False
        self.ready: asyncio.Future = self.loop.create_future()
        self.idle_timer: Any = None
        config = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_inbound_headers=False,
                                           validate_outbound_headers=False, normalize_outbound_headers=False)
        self.h2 = FastH2Connection(config)
        self.h2.encoder = FastEncoder()

    def room(self) -> int:
        return min(self.max_streams, _MAX_STREAMS) - len(self.legs) - self.reserved

    # -- asyncio
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        c = self.h2
        c.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
        })
        c.initiate_connection()
        c.increment_flow_control_window(_CONN_WINDOW - 65535)
        self.write()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.fail_all(f"HTTP/2 protocol error from upstream: {e}")
            self.close()
            return
        touched = []
        for ev in events:
            leg = self.legs.get(getattr(ev, "stream_id", 0) or 0)
            if leg is not None:
                touched.append(leg.stream)
            _dispatch(self, ev, leg)
        self.write()
        for server in {s.server for s in touched}:
            server.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("upstream closed the connection"))
        self.fail_all("upstream closed the connection")

    def pause_writing(self) -> None:
        for leg in self.legs.values():
            leg.write_paused = True

    def resume_writing(self) -> None:
        for leg in list(self.legs.values()):
            leg.write_paused = False
            leg.push()
        self.write()

    # -- legs
    def open(self, leg: "H2Leg", headers: list, end: bool) -> int:
        self.reserved = max(0, self.reserved - 1)
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, headers, end_stream=end)
        self.legs[sid] = leg
        self._cancel_idle()
        return sid

    def release(self, sid: int) -> None:
        self.legs.pop(sid, None)
        if not self.legs and not self.reserved and not self.closed:
            if self.draining:
                self.close()
            else:
                self._arm_idle()

    def fail_all(self, why: str) -> None:
        legs, self.legs = list(self.legs.values()), {}
        for leg in legs:
            leg.failed(502, why, retry=leg.retryable())
            leg.stream.flush()

    def write(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._cancel_idle()
            self.pool.forget(self)
            try:
                self.h2.close_connection()
                self.transport.write(self.h2.data_to_send())
            except Exception:
                pass
            self.transport.close()

    # -- idle
    def _arm_idle(self) -> None:
        if self.idle_timer is None and self.pool.idle_timeout > 0:
            self.idle_timer = self.loop.call_later(self.pool.idle_timeout, self._idle)

    def _cancel_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def _idle(self) -> None:
        self.idle_timer = None
        if not self.legs and not self.reserved:
            self.close()


def _dispatch(conn: H2Upstream, ev: Any, leg: "H2Leg | None") -> None:
    kind = type(ev)
    if kind is h2.events.RemoteSettingsChanged:
        setting = ev.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
        if setting is not None:
            conn.max_streams = setting.new_value
        if not conn.ready.done():
            conn.ready.set_result(True)
        for each in list(conn.legs.values()):
            each.push()
    elif kind is h2.events.WindowUpdated:
        for each in [leg] if ev.stream_id and leg is not None else list(conn.legs.values()):
            each.push()
    elif kind is h2.events.ConnectionTerminated:
        conn.draining = True
        conn.pool.forget(conn)
        last = ev.last_stream_id or 0
        for sid, each in list(conn.legs.items()):
            if sid > last:
                conn.legs.pop(sid, None)
                each.failed(502, "upstream sent GOAWAY", retry=True, same_peer=True)
    elif leg is not None:
        leg.on_event(ev)
    elif kind is h2.events.DataReceived:
        conn.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)


class H2Pool:
    """A worker's HTTP/2 upstream connections, by (host, port, TLS key)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_timeout: float, source: tuple[str, int] | None):
        self.loop = loop
        self.idle_timeout = idle_timeout
        self.source = source
        self.conns: dict[tuple, list[H2Upstream]] = {}
        self.created = 0

    async def acquire(self, key: tuple, host: str, port: int, timeout: float, ctx: ssl.SSLContext | None,
                      sni: str | None) -> H2Upstream:
        """A connection with room for one more stream (reserved for the caller)."""
        while True:
            conn = self._with_room(key) or self._open(key, host, port, timeout, ctx, sni)
            conn.reserved += 1
            try:
                await asyncio.wait_for(asyncio.shield(conn.ready), timeout)
            except BaseException:
                conn.reserved -= 1
                raise
            if conn.closed:
                conn.reserved -= 1
                raise ConnectionError("upstream closed the connection")
            if len(conn.legs) + conn.reserved <= min(conn.max_streams, _MAX_STREAMS):
                return conn
            conn.reserved -= 1  # booked before the peer's SETTINGS said how many streams it takes

    def ready_with_room(self, key: tuple) -> H2Upstream | None:
        """A connection that can take a stream right now (its peer's SETTINGS arrived), or None."""
        conn = self._with_room(key)
        if conn is None or not conn.ready.done() or conn.ready.cancelled() or conn.ready.exception() is not None:
            return None
        return conn

    def _with_room(self, key: tuple) -> H2Upstream | None:
        for conn in self.conns.get(key, ()):
            if not conn.closed and not conn.draining and conn.room() > 0:
                return conn
        return None

    def _open(self, key: tuple, host: str, port: int, timeout: float, ctx: ssl.SSLContext | None,
              sni: str | None) -> H2Upstream:
        conn = H2Upstream(self, key)
        self.conns.setdefault(key, []).append(conn)
        kw: dict[str, Any] = {}
        if ctx is not None:
            kw = {"ssl": _h2_context(ctx), "server_hostname": sni or host}
        if self.source is not None:
            kw["local_addr"] = self.source
        self.loop.create_task(self._connect(conn, host, port, timeout, kw))
        return conn

    async def _connect(self, conn: H2Upstream, host: str, port: int, timeout: float, kw: dict) -> None:
        # Ready once the peer's SETTINGS arrived (H2Upstream resolves `ready`), within connect_timeout.
        try:
            await asyncio.wait_for(self.loop.create_connection(lambda: conn, host, port, **kw), timeout)
            await asyncio.wait_for(asyncio.shield(conn.ready), timeout)
        except BaseException as e:
            self.forget(conn)
            if not conn.ready.done():
                conn.ready.set_exception(e if isinstance(e, Exception) else ConnectionError("cancelled"))
            conn.ready.exception()  # mark retrieved: waiters got it through their own await
            if conn.transport is not None:
                conn.close()
            conn.closed = True
            return
        self.created += 1

    def forget(self, conn: H2Upstream) -> None:
        conns = self.conns.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)

    def close(self) -> None:
        for conns in list(self.conns.values()):
            for conn in list(conns):
                conn.close()
        self.conns.clear()
