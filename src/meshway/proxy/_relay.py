"""The response half of an HTTP/1.1 exchange: relaying the upstream's answer, and tunnels.

Rules:
- The response head is re-encoded (hop-by-hop headers dropped, Via and latency headers added);
  bytes produced during one upstream read are joined and written once by `flush()`.
- Framing towards the client: Content-Length passes through; chunked and close-delimited
  upstream bodies go chunked to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones; a `body`
  plugin phase forces chunked.
- An upstream connection goes back to the pool only if the response said keep-alive and the
  whole request was sent; a 101 answer to an Upgrade turns both connections into a byte tunnel.
"""
from __future__ import annotations

import logging
from typing import Any

from . import _core
from ._context import Context
from ._engine import replaced_head, run_body, run_phase
from ._errors import REASONS
from ._headers import downstream_response_headers, encode_response_headers

__all__ = ["ResponseRelay"]

log = logging.getLogger("meshway.proxy")
_NO_BODY_STATUS = frozenset({204, 304})
_BUFFER_LIMIT = 256 * 1024


class ResponseRelay:
    """Mixin of `Exchange`: the upstream response side, flow control and tunnels."""

    # -- upstream response ---------------------------------------------------------------------
    def on_up_headers(self, status: int, keep_alive: bool, headers: list, reason: bytes,
                      encoded: tuple | None = None) -> None:
        """`encoded`: `encode_response_headers(headers)` as the compiled parser made it (None: not
        made, or a case it leaves to the Python function)."""
        if 100 <= status < 200 and status != 101:
            self.interim = True
            return
        self.t_headers = self.loop.time()
        self.status = status
        self.up_keep_alive = keep_alive
        self.up_headers = headers
        self.up_reason = reason
        tunnel = status == 101 and self.req.upgrade
        ctx = self.ctx
        if ctx is None or (self.chain.response_free and not ctx.response_headers):
            lines, length = encoded if encoded is not None and not tunnel else \
                encode_response_headers(self.up_headers, tunnel)
            body_phase = False
        else:  # plugins see the head: the pairs, then their changes encoded (in C when compiled)
            core = _core.compiled
            hdrs = core.response_header_pairs(headers) if core is not None and not tunnel else None
            if hdrs is None:
                hdrs = downstream_response_headers(headers, tunnel=tunnel)
            self._response_phase(ctx, status, hdrs)
            if ctx.exited is not None:  # a response phase answered instead (Kong: exit in header_filter)
                self._release(self.conn, False)  # its body is never read: the connection cannot be reused
                self.respond(ctx.exited.status, ctx.exited.body, replaced_head(ctx), content_type=None)
                return
            if ctx.response_status != status:  # a response phase set it (Kong's ngx.status): not the upstream's reason
                status = self.status = ctx.response_status
                self.up_reason = b""
            length = encoded[1] if encoded is not None and not tunnel else _content_length(headers)
            body_phase = "body" in self.chain.phases
            if core is not None and not tunnel and not body_phase and self.req.method != "HEAD":
                head = self._head_in_c(core, status, ctx.response_headers, length)
                self.head_bytes += len(head)
                self.out.append(head)
                self.response_started = True
                return
            lines = core.header_lines(ctx.response_headers) if core is not None else _wire(ctx.response_headers)
        head = self._encode_response_head(status, lines, length, tunnel, body_phase)
        self.head_bytes += len(head)
        self.out.append(head)
        self.response_started = True
        if tunnel:
            self.tunneling = True
        elif self.req.method == "HEAD":
            self.up_keep_alive = False  # httptools would wait for the body a HEAD answer lacks
            self._complete(self.conn)

    def _response_phase(self, ctx: Context, status: int, hdrs: list) -> None:
        preset = ctx.response_headers
        ctx.response_status = status
        ctx.response_headers = hdrs
        for name, value in preset:
            ctx.set_response_header(name.decode("latin-1"), value.decode("latin-1"))
        if "response" in self.chain.phases:
            pending = run_phase(self.chain, "response", ctx)
            if pending is not None:
                pending.close()
                log.error("async response phases are not supported on HTTP/1.1 yet (request %s)", ctx.request_id)

    def _head_in_c(self, core: Any, status: int, pairs: list, length: bytes | None) -> bytes:
        """`_encode_response_head` of a plugin route's head in one C buffer (`response_head`), for
        what `on_up_headers` sends there: not a tunnel, no body phase, not HEAD."""
        req, worker = self.req, self.worker
        chunked = False
        if length is None and status >= 200 and status != 204 and status != 304:
            if req.version == "1.1":
                chunked = self.resp_chunked = True
            else:
                self.resp_close = True
        keep = req.keep_alive and not self.resp_close and not req.upgrade
        return core.response_head(status, self.up_reason, pairs, worker.via, worker.latency_tokens,
                                  self.t_headers - self.t_sent, self.t_sent - self.t0, length, chunked, keep)

    def _encode_response_head(self, status: int, lines: bytes, framed_len: bytes | None, tunnel: bool,
                              body_phase: bool) -> bytes:
        worker = self.worker
        parts = [_status_line(status, self.up_reason), lines]
        if worker.via is not None:
            parts.append(_via_line(worker.via))
        if worker.latency_tokens:
            parts.append(_latency_lines(int((self.t_headers - self.t_sent) * 1000), int((self.t_sent - self.t0) * 1000)))
        if tunnel:
            parts.append(b"\r\n")
            return b"".join(parts)
        no_body = status in _NO_BODY_STATUS or status < 200
        if framed_len is not None and not body_phase:
            parts += (b"Content-Length: ", framed_len, b"\r\n")
        elif no_body:
            pass
        elif self.req.method == "HEAD":
            if framed_len is not None:
                parts += (b"Content-Length: ", framed_len, b"\r\n")
        elif self.req.version == "1.1":
            self.resp_chunked = True
            parts.append(b"Transfer-Encoding: chunked\r\n")
        else:
            self.resp_close = True
        keep = self.req.keep_alive and not self.resp_close and not self.req.upgrade
        parts.append(b"Connection: keep-alive\r\n\r\n" if keep else b"Connection: close\r\n\r\n")
        return b"".join(parts)

    def on_up_body(self, body: bytes) -> None:
        if self.interim or self.done:
            return
        if self.ctx is not None and "body" in self.chain.phases:
            body = run_body(self.chain, self.ctx, body, False)
            if not body:
                return
        self.sent_bytes += len(body)
        if self.resp_chunked:
            chunk = b"%x\r\n%s\r\n" % (len(body), body)
            self.head_bytes += len(chunk) - len(body)
            self.out.append(chunk)
        else:
            self.out.append(body)

    def on_up_complete(self, conn: Any) -> None:
        if self.interim:
            self.interim = False
            return
        if self.tunneling or self.done:
            return
        self._complete(conn)

    def _complete(self, conn: Any) -> None:
        if self.ctx is not None and "body" in self.chain.phases:
            tail = run_body(self.chain, self.ctx, b"", True)
            if tail:
                self.sent_bytes += len(tail)
                chunk = b"%x\r\n%s\r\n" % (len(tail), tail) if self.resp_chunked else tail
                self.head_bytes += len(chunk) - len(tail)
                self.out.append(chunk)
        if self.resp_chunked:
            self.head_bytes += 5
            self.out.append(b"0\r\n\r\n")
        now = self.loop.time()  # one clock read for the pool, the access log and the idle timer
        self._release(conn, self.up_keep_alive and self.req_sent, now)
        self.finish(now=now)

    def _relayed_end(self, conn: Any) -> None:
        """`_complete` of a response the compiled core relayed (`_h1parse.ResponseParser`), for an
        exchange without a plugin Context: `_release` and `finish` inlined (each Python call saved
        is ~400 instructions, and this runs once per request). Anything else: `_complete`."""
        if self.ctx is not None:
            self._complete(conn)
            return
        out = self.out
        if self.resp_chunked:
            self.head_bytes += 5
            out.append(b"0\r\n\r\n")
        now = self.loop.time()  # one clock read for the pool, the access log and the idle timer
        self.conn = None  # `_release`
        conn.exchange = None
        service = self.target.service
        if service.tracked:
            service.balancer.on_release(self.peer)
            service.balancer.report(self.peer, status=self.status or None,
                                    latency_ms=(self.t_headers - self.t_sent) * 1000 if self.t_headers else None)
        if self.up_keep_alive and self.req_sent and not conn.closed:
            pool = self.worker.pool
            conns = pool.idle.get(conn.key)
            if conns is not None and len(conns) < pool.size and conn.requests < pool.max_requests \
                    and not conn.tunnel and not conn.spoke_first:
                conn.timeout = 0.0  # `pool.put` where the connection stays, inlined (keep both in step)
                conn.idle_since = now
                conns[conn] = None
            else:
                pool.put(conn, now)
        else:
            conn.close()
        self.done = True  # `finish`, without a Context
        server = self.server
        if out:
            if not server.closed:
                server.transport.write(b"".join(out))
            out.clear()
        req = self.req
        req.exchange = None  # no reference cycle: the request dies by refcount, not by the GC
        keep = req.keep_alive and (req.complete or (not req.chunked and not req.content_length)) \
            and not self.resp_close and not req.upgrade
        worker = self.worker
        worker.access.h1_line(self, now)
        timeout = worker.keepalive_timeout
        if keep and req.complete and not server.queue and not server.closed and not server.eof \
                and server.timer is not None and timeout > 0 and now + timeout >= server.timer_at:
            # `server.exchange_done` of a kept-alive connection with nothing queued whose lazy
            # timer stays, inlined: this runs per request (keep both in step)
            worker.requests += 1
            server.active = None
            server.deadline_kind = "idle"
            server.deadline = now + timeout
            return
        server.exchange_done(self, keep, now)

    def _release(self, conn: Any, reusable: bool, now: float | None = None) -> None:
        self.conn = None
        if conn is None:
            return
        conn.exchange = None
        service = self.target.service
        if service.tracked:
            service.balancer.on_release(self.peer)
            service.balancer.report(self.peer, status=self.status or None,
                                    latency_ms=(self.t_headers - self.t_sent) * 1000 if self.t_headers else None)
        if reusable and not conn.closed:
            self.worker.pool.put(conn, now)
        else:
            conn.close()

    def flush(self) -> None:
        if self.out:
            if not self.server.closed:
                self.server.transport.write(b"".join(self.out))
            self.out.clear()

    # -- flow control ------------------------------------------------------------------------
    def upstream_pause_writing(self) -> None:
        # The upstream stopped taking bytes: the service's write_timeout runs until it drains.
        self.server.pause("upstream")
        if self.conn is not None and self.target is not None:
            conn = self.conn
            self.write_timer = self.loop.call_later(self.target.service.write_timeout, self._write_timed_out, conn)

    def upstream_resume_writing(self) -> None:
        timer = self.__dict__.pop("write_timer", None)
        if timer is not None:
            timer.cancel()
        self.server.resume("upstream")

    def _write_timed_out(self, conn: Any) -> None:
        self.__dict__.pop("write_timer", None)
        if conn is self.conn and not self.done:
            conn.close()
            self.upstream_failed(conn, "timeout", "upstream timed out while writing the request")

    def client_pause_writing(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.transport.pause_reading()

    def client_resume_writing(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.transport.resume_reading()

    # -- tunnels (WebSocket and other upgrades) ------------------------------------------------
    def upstream_upgraded(self, conn: Any, rest: bytes) -> None:
        if not self.tunneling:
            conn.close()
            self.upstream_failed(conn, "invalid", "unexpected upgrade")
            return
        conn.disarm()
        self.flush()
        if rest:
            self.server.transport.write(rest)
        if self.server.tunnel is not self:
            self.server.tunnel = self
        for chunk in self.__dict__.pop("tunnel_buf", ()):
            conn.write(chunk)

    def tunnel_from_client(self, data: bytes) -> None:
        if self.tunneling and self.conn is not None:
            self.conn.write(data)
        elif self.done:
            return
        else:
            if not self.__dict__.get("tunnel_buf"):
                self.tunnel_buf = []
            self.tunnel_buf.append(data)
            if sum(map(len, self.tunnel_buf)) > _BUFFER_LIMIT:
                self.server.pause("buffer")

    def tunnel_from_upstream(self, data: bytes) -> None:
        if not self.server.closed:
            self.server.transport.write(data)

    def tunnel_closed(self, conn: Any) -> None:
        if not self.done:
            self.done = True
            self.worker.access.line(self)
        self.conn = None
        self.target.service.balancer.on_release(self.peer)
        self.server.close()



# Status lines and the Via line, built once instead of formatted per response (~0.3 us each).
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}
_VIA_LINES: dict[bytes, bytes] = {}


def _status_line(status: int, reason: bytes) -> bytes:
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason or REASONS.get(status, b""))
        if len(_STATUS_LINES) < 1024:  # reasons come from upstreams: bounded
            _STATUS_LINES[key] = line
    return line


# The latency header lines for the usual small values (ms), prebuilt: saves formatting them.
_LATENCY_LINES = [[b"X-Meshway-Upstream-Latency: %d\r\nX-Meshway-Proxy-Latency: %d\r\n" % (up, px) for px in range(16)]
                  for up in range(16)]


def _latency_lines(upstream_ms: int, proxy_ms: int) -> bytes:
    if 0 <= (upstream_ms | proxy_ms) < 16:  # both in 0..15
        return _LATENCY_LINES[upstream_ms][proxy_ms]
    return b"X-Meshway-Upstream-Latency: %d\r\nX-Meshway-Proxy-Latency: %d\r\n" % (upstream_ms, proxy_ms)


def _via_line(via: bytes) -> bytes:
    line = _VIA_LINES.get(via)
    if line is None:
        line = _VIA_LINES[via] = b"Via: " + via + b"\r\n"
    return line


def _wire(headers: list) -> bytes:
    parts: list[bytes] = []
    for name, value in headers:  # one join over pieces: no generator, no concatenation per header
        parts += (name, b": ", value, b"\r\n")
    return b"".join(parts)


def _content_length(headers: list) -> bytes | None:
    for k, v in headers:  # a plain loop: no generator frame per response
        if k.lower() == b"content-length":
            return v
    return None


def _has_length(headers: list) -> bool:
    return any(k.lower() == b"content-length" for k, _ in headers)


def _is_chunked(headers: list) -> bool:
    return any(k.lower() == b"transfer-encoding" and b"chunked" in v.lower() for k, v in headers)
