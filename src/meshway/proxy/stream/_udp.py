"""UDP stream listeners (`stream_listen = 0.0.0.0:5353 udp`): datagrams relayed with a session per client.

Rules (Kong's stream subsystem with `udp`, i.e. nginx's UDP proxy, kept where it applies):
- A client (its source address and port) gets a session on its first datagram: the route is chosen
  then, from the routes with protocol `udp`, by `sources` / `destinations` (ports and IPs, Kong's
  priority), and the service's target (or its upstream's balancer pick) is fixed for the session.
- Each session has its own upstream socket, so the upstream's answers go back to that client only,
  from the listener's address (what a DNS client checks).
- A session ends after the service's `read_timeout` / `write_timeout` (the larger) without a
  datagram either way; its access log line is written then (`stream ... kind=udp`).
- Bounded: at most MAX_SESSIONS sessions per listener (a new client beyond that is dropped and
  logged once a second at most), and at most MAX_PENDING datagrams queued while a session's
  upstream socket opens. A datagram without a route, or an upstream that refuses (ICMP), costs
  nothing after its session is closed; the listener never stops on bad traffic.
- With several workers on one listening socket, the kernel hands each datagram to one of them: a
  client's datagrams may then make a session in each worker (fine for request/response
  protocols such as DNS); `workers = 1` keeps one session per client.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from ._plugins import PLUGIN_EXIT, StreamContext
from ._log import CONNECT_FAILED, IDLE_TIMEOUT, NO_ROUTE, NO_SERVICE, NO_UPSTREAM, ConnectionRecord, emit
from ._router import ConnectionFacts

log = logging.getLogger("meshway.stream")
MAX_SESSIONS = 10_000
MAX_PENDING = 64


class UdpListener(asyncio.DatagramProtocol):
    """One `udp` stream_listen socket: client address -> its session."""

    def __init__(self, label: str, get_runtime: Callable[[], Any], access_log: Callable[[str], None] | None):
        self.label, self.get_runtime, self.access_log = label, get_runtime, access_log
        self.sessions: dict[tuple, _Session] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._local: tuple[str, int] = ("-", 0)
        self._dropped_at = 0.0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._local = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        session = self.sessions.get(addr)
        if session is None:
            if len(self.sessions) >= MAX_SESSIONS:
                now = time.monotonic()
                if now - self._dropped_at > 1.0:
                    self._dropped_at = now
                    log.warning("udp listener %s: %d sessions, datagrams of new clients dropped", self.label, MAX_SESSIONS)
                return
            session = _Session(self, addr)
            if session.closed:  # no route, service or target: logged, nothing kept
                return
            self.sessions[addr] = session
        session.from_client(data)

    def error_received(self, exc: Exception) -> None:  # e.g. an ICMP error for a reply: nothing to undo
        log.debug("udp listener %s: %s", self.label, exc)

    def reply(self, data: bytes, addr: tuple) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def ended(self, session: "_Session") -> None:
        if self.sessions.get(session.client) is session:
            del self.sessions[session.client]

    def close(self) -> None:
        for session in list(self.sessions.values()):
            session.close(None)
        if self.transport is not None:
            self.transport.close()


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, session: "_Session") -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.session.from_upstream(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable...: the target refuses
        self.session.refused(exc)


class _Session:
    """One client's datagrams to one upstream target, until idle."""

    def __init__(self, listener: UdpListener, client: tuple) -> None:
        self.listener, self.client = listener, client
        self.started = time.monotonic()
        self.record = ConnectionRecord(client=f"{client[0]}:{client[1]}", listener=listener.label, kind="udp",
                                       destination=f"{listener._local[0]}:{listener._local[1]}", mode="raw")
        self.pending: list[bytes] | None = []
        self.upstream: asyncio.DatagramTransport | None = None
        self.closed = False
        self.hop = self.service = None
        self.idle = 60.0
        self.timer: asyncio.TimerHandle | None = None
        self._opening: asyncio.Task | None = None
        self.ctx: StreamContext | None = None  # only on a route with stream plugins
        self._route()

    def _route(self) -> None:
        runtime = self.listener.get_runtime()
        local = self.listener._local
        facts = ConnectionFacts(self.client[0], self.client[1], local[0], local[1])
        route = next(iter(runtime.udp_router.candidates(facts)), None)
        if route is None:
            if runtime.global_plugins is not None:  # no route: the global plugins log it (Kong)
                self.ctx = StreamContext(runtime.global_plugins, "udp", self.client[0], local[1], self.started,
                                         time.monotonic())
            return self.close(NO_ROUTE)
        self.record.route = route.label
        pending = None
        if route.plugins is not None:  # Kong's preread phase: after the router, before the upstream
            self.ctx = StreamContext(route.plugins, "udp", self.client[0], local[1], self.started, time.monotonic())
            pending = self.ctx.preread()
            if self.ctx.exited is not None:
                return self.close(PLUGIN_EXIT, f"closed by a preread plugin (status {self.ctx.exited})")
        self.service = route.service
        if self.service is None:
            return self.close(NO_SERVICE)
        self.idle = self.service.idle_timeout
        self.hop = self.service.targets.pick(self.client[0], frozenset())
        if self.hop is None:
            return self.close(NO_UPSTREAM)
        self.record.upstream = str(self.hop)
        self._touch()
        self._opening = asyncio.get_running_loop().create_task(self._open(pending))  # kept: a task needs a reference

    async def _open(self, preread: Any = None) -> None:
        loop = asyncio.get_running_loop()
        if preread is not None:  # a preread plugin suspended: the upstream waits for its verdict
            await preread
            if self.ctx.exited is not None:
                return self.close(PLUGIN_EXIT, f"closed by a preread plugin (status {self.ctx.exited})")
        if self.ctx is not None:
            self.ctx.try_started(self.hop)
        try:
            transport, _ = await asyncio.wait_for(loop.create_datagram_endpoint(
                lambda: _Upstream(self), remote_addr=(self.hop.host, self.hop.port)), self.service.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            self.service.targets.failed(self.hop, isinstance(e, asyncio.TimeoutError))
            if self.ctx is not None:
                self.ctx.try_failed(isinstance(e, asyncio.TimeoutError))
            return self.close(CONNECT_FAILED, str(e) or type(e).__name__)
        if self.closed:
            transport.close()
            return
        self.upstream = transport
        self.service.targets.connected(self.hop)
        if self.ctx is not None:
            self.ctx.connected(time.monotonic())
        for data in self.pending or ():
            transport.sendto(data)
        self.pending = None

    def refused(self, exc: Exception) -> None:
        if not self.closed:
            self.service.targets.failed(self.hop, False)  # the balancer's passive health sees it
            self.close(CONNECT_FAILED, str(exc))

    def from_client(self, data: bytes) -> None:
        if self.closed:
            return
        self.record.up_bytes += len(data)
        self._touch()
        if self.upstream is not None:
            self.upstream.sendto(data)
        elif self.pending is not None and len(self.pending) < MAX_PENDING:
            self.pending.append(data)

    def from_upstream(self, data: bytes) -> None:
        if self.closed:
            return
        self.record.down_bytes += len(data)
        self._touch()
        self.listener.reply(data, self.client)

    def _touch(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.idle, self.close, IDLE_TIMEOUT)

    def close(self, reason: str | None, detail: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.upstream is not None:
            self.upstream.close()
            self.service.targets.released(self.hop)
        self.pending = None
        self.listener.ended(self)
        self.record.reason, self.record.detail = reason, detail
        duration = time.monotonic() - self.started
        emit(self.record, duration, self.listener.access_log)
        if self.ctx is not None:
            self.ctx.finished(self.record, duration)


async def start_udp_listener(sock: Any, spec: Any, get_runtime: Callable[[], Any],
                             access_log: Callable[[str], None] | None = None) -> UdpListener:
    """Serve datagrams on `sock` (bound, see netutil.prepare_listener_socket); `close()` stops it."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(lambda: UdpListener(str(spec), get_runtime, access_log), sock=sock)
    return protocol
