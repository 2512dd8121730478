"""The client side of HTTP/1.1: one asyncio Protocol per connection, parsing with the compiled
parser (`_core`, one `on_head` call per request head) or httptools (`http1_impl = python`).

Rules (what httptools/llhttp lets through is checked here):
- Request line longer than `large_client_header_buffers` -> 414; a header field longer than
  that, a header section longer than 4x that (counted per field, whether the head came in one
  read or many; chunked trailers included) or more than `max_request_headers` fields -> 431
  (nginx answers 400 "Request Header Or Cookie Too Large"; 431 is RFC 6585's code, as Envoy's); NUL, CR or LF inside a header value -> 400; more than one Content-Length or
  Host -> 400; Content-Length with Transfer-Encoding -> 400; a Transfer-Encoding other than
  `chunked` -> 501; HTTP/1.1 without Host -> 400; CONNECT and TRACE -> 405 (with `Allow`); a
  version whose major is not 1 (`HTTP/2.0`) -> 505, as nginx. Every error closes the
  connection after its response, so nothing after a bad message can reach an upstream.
- A connection waiting for (the rest of) a request head gets 408 after
  `client_header_timeout` (the whole head, as nginx); an idle keep-alive connection closes
  after `keepalive_timeout`; a body gets 408 when no byte of it arrived for
  `client_body_timeout` (an idle timeout between two reads, as nginx's: a slow upload that keeps
  sending goes on), not counting time when the proxy itself stopped reading (upstream backpressure).
- Pipelined requests are served one after the other; the next one waits (buffered, reading
  paused) until the current response is complete, and, while the client's write buffer is over
  its high-water mark (a client that sends and never reads), until the client reads: worker
  memory stays bounded by one read's requests and one high-water mark of answers.
- Reading from the client pauses when the upstream cannot take more (or nothing is connected
  yet and 256 KiB are buffered), and resumes when it drains.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import httptools

from .meshhooks import MESH_ALPN, peer_spiffe_id

from . import _core
from ._errors import error_body, render_response
from ._exchange import Exchange, Request, discard_limit
from ._headers import forwarded_fixed
from ._preface import is_preface

__all__ = ["H1Server"]

log = logging.getLogger("meshway.proxy")


class _Reject(Exception):
    def __init__(self, status: int, message: str, body_message: str | None = None):
        super().__init__(message)
        self.status = status
        self.body_message = body_message


# Method strings of the usual methods: a dict probe instead of a decode per request.
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_new_request = object.__new__
_SPECIAL = {b"host": 1, b"content-length": 2, b"transfer-encoding": 3, b"expect": 4, b"user-agent": 5,
            b"referer": 6}


class H1Server(asyncio.Protocol):
    """One client connection: parse requests, hand each to an `Exchange`, keep the connection."""

    h2_prior_knowledge = True  # the worker wires h2c (see `h2c`); test stand-ins check this

    # Slots, not a per-instance dict: past 30 attributes CPython 3.11 gives each instance its own
    # ~1.5 KiB dict, a third of what an idle connection costs (bench/memory_rss.py).
    __slots__ = ("worker", "h2c", "scheme", "listen_port", "transparent", "loop", "limit", "head_limit",
                 "max_headers", "head_left", "transport", "parser", "cur", "active", "queue", "closed", "paused",
                 "tunnel", "client_ip", "client_port", "sni", "dst", "head_bytes", "in_head", "deadline",
                 "deadline_kind", "timer", "timer_at", "eof", "write_paused", "requests", "routes_of", "routes",
                 "mesh_peer", "trusted", "ip_b", "fwd_fixed")

    def __init__(self, worker: Any, scheme: str, listen_port: int, transparent: bool = False, h2c: bool = False):
        self.worker = worker
        self.h2c = h2c
        self.scheme = scheme
        self.listen_port = listen_port
        self.transparent = transparent
        self.loop = worker.loop
        self.limit = worker.header_limit
        self.head_limit = 4 * worker.header_limit
        self.max_headers = worker.max_headers
        self.head_left = 0  # bytes the current head may still take (on_header): one-read heads too
        self.transport: Any = None
        self.parser = _core.request_parser(self, _Reject, self.limit)  # compiled or httptools (_core)
        self.cur: Request | None = None
        self.active: Exchange | None = None
        self.queue: collections.deque[Request] | tuple = ()  # a deque once a client pipelines
        self.closed = False
        self.paused: set[str] = set()
        self.tunnel: Exchange | None = None
        self.client_ip = "unknown"
        self.client_port = 0
        self.sni: str | None = None
        self.dst: tuple[str, int] | None = None
        self.head_bytes = 0
        self.in_head = False
        self.deadline = 0.0
        self.deadline_kind: str | None = None
        self.timer: Any = None
        self.timer_at = 0.0  # when `timer` fires
        self.eof = False  # the client half-closed while a request was in flight
        self.write_paused = False  # the transport's write buffer is over its high-water mark
        self.requests = 0
        self.routes_of: Any = None  # the runtime `routes` belongs to (Exchange._routes)
        self.routes: dict | None = None
        self.mesh_peer: str | None = None  # the other sidecar's SPIFFE id on a mesh hop

    # -- connection lifecycle
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.worker.accepted += 1
        peer = transport.get_extra_info("peername")
        if peer:
            ip = peer[0]
            self.client_ip = ip[7:] if ip.startswith("::ffff:") else ip
            self.client_port = peer[1]
        self.trusted = self.worker.trusted(self.client_ip)
        self.ip_b = self.client_ip.encode()
        self.fwd_fixed = forwarded_fixed(self.client_ip, self.scheme, self.listen_port)
        # TCP_NODELAY is already on: uvloop's TCP transports set it, and the listener sets it on
        # what the compiled TLS transport takes (_accept.Acceptor); asking for the socket costs a
        # PseudoSocket, a socket object and two getsockname calls per connection
        if self.transparent:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                self.dst = self.worker.original_destination(sock)
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.sni = getattr(sslobj, "meshway_sni", None)  # set by the listener's SNI callback (_tls)
            if self.mesh_peer is None and getattr(sslobj, "meshway_mesh", False) \
                    and not self._mesh_peer_verified(sslobj):
                return
            if sslobj.selected_alpn_protocol() == "h2" and self.worker.h2_handoff is not None:
                self.worker.h2_handoff(self, transport)
                return
        self.worker.connections.add(self)
        self.set_deadline("header", self.worker.client_header_timeout)

    def _mesh_peer_verified(self, sslobj: Any) -> bool:
        """A mesh connection on a TLS listener must come from a mesh node (its certificate was optional)."""
        self.mesh_peer = peer_spiffe_id(sslobj.getpeercert(binary_form=True))
        if self.mesh_peer is None or sslobj.selected_alpn_protocol() != MESH_ALPN:
            log.warning("mesh refused client=%s dst=%s: the peer is not a mesh node", self.client_ip, self.dst)
            self.closed = True
            self.transport.abort()
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.worker.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.active is not None:
            self.active.client_lost()
        self.queue = ()

    def data_received(self, data: bytes) -> None:
        if self.h2c and self.requests == 0 and self.cur is None and self.worker.h2_handoff is not None \
                and is_preface(data):
            self.worker.h2_handoff(self, self.transport, data)
            return
        if self.tunnel is not None:
            self.tunnel.tunnel_from_client(data)
            return
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._upgrade(data[e.args[0]:] if e.args else b"")
            return
        except httptools.HttpParserError as e:
            self._parse_error(e)
            return
        if self.in_head and self.head_bytes > 4 * self.limit:
            cur = self.cur
            if cur is not None and not cur.headers and len(cur.url) > self.limit:
                self.reject(414, "request line too long")
            else:
                self.reject(431, "request header section too long")

    def eof_received(self) -> bool | None:
        if self.active is not None and not self.active.req.complete:
            return True  # half-close mid-body: let the exchange fail on connection_lost
        if self.active is not None:
            self.eof = True  # the response still goes out; close after it (`_next`)
            return True
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.active is not None:
            self.active.client_pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.active is not None:
            self.active.client_resume_writing()
        elif self.queue and not self.closed:  # pipelined requests waited for the client to read
            self.resume("write")
            self._start(self.queue.popleft())
            if not self.queue:
                self.resume("pipeline")

    # -- read flow control, shared by the reasons to stop reading
    def pause(self, reason: str) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.paused:
            self.paused.discard(reason)
            if not self.paused and not self.closed:
                self.transport.resume_reading()

    # -- timeouts: one lazy timer per connection
    def set_deadline(self, kind: str | None, timeout: float, now: float | None = None) -> None:
        """Arm the connection's one timeout; `now` is the caller's loop.time() if it has one."""
        self.deadline_kind = kind
        if kind is None or timeout <= 0:
            return
        self.deadline = deadline = (self.loop.time() if now is None else now) + timeout
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self.timer_at = deadline
        elif deadline < self.timer_at:  # sooner than the timer would look (a short body timeout)
            self.timer.cancel()
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self.timer_at = deadline

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed or self.deadline_kind is None:
            return
        if self.loop.time() < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            self.timer_at = self.deadline
            return
        kind = self.deadline_kind
        if kind == "idle" or (kind == "header" and self.cur is None and self.requests == 0 and not self.head_bytes):
            self.close()
        elif kind == "header":
            self.reject(408, "client timed out sending the request head")
        elif kind == "body" and self.paused - {"pipeline"}:  # we stopped reading: not the client's gap
            self.set_deadline("body", self.worker.client_body_timeout)
        elif kind == "body":
            self.reject(408, "client timed out sending the request body")

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self.cur = Request()
        self.in_head = True
        self.head_left = self.head_limit
        if self.active is None and self.deadline_kind == "idle":
            self.set_deadline("header", self.worker.client_header_timeout)

    def on_url(self, url: bytes) -> None:
        cur = self.cur
        cur.url = url = cur.url + url if cur.url else url
        if len(url) > self.limit:
            raise _Reject(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp (strict) already rejects NUL, bare CR and bare LF in values and obs-fold.
        cur = self.cur
        cur.headers.append((name, value))
        n = len(name) + len(value)
        # Counted per field, not per read: a whole head can arrive in one read (trailers of a
        # chunked body take from the same budget).
        self.head_left = left = self.head_left - n
        if left < 0 or n > self.limit:
            raise _Reject(431, "request header section too long" if left < 0 else "request header too long")
        kind = _SPECIAL.get(name.lower())
        if kind is None:
            return
        if kind == 1:
            cur.host_count += 1
            cur.host = value.decode("latin-1")
        elif kind == 2:
            cur.cl_count += 1
        elif kind == 3:
            cur.te = value if cur.te is None else cur.te + b"," + value
        elif kind == 4:
            cur.expect = value.strip().lower() == b"100-continue"
        elif kind == 5:
            cur.ua = value
        else:
            cur.referer = value

    def on_headers_complete(self) -> None:
        cur = self.cur
        self.in_head = False
        self.head_bytes = 0
        if len(cur.headers) > self.max_headers:
            raise _Reject(431, "too many request headers")
        p = self.parser
        raw = p.get_method()
        cur.method = _METHODS.get(raw) or raw.decode("latin-1")
        cur.version = p.get_http_version()
        cur.keep_alive = p.should_keep_alive()
        cur.upgrade = p.should_upgrade()
        self._validate(cur)
        self.requests += 1
        if self.active is None:
            self._start(cur)
        else:
            if not self.queue:
                self.queue = collections.deque()
            self.queue.append(cur)
            self.pause("pipeline")

    def on_head(self, url: bytes, headers: list, head_left: int, method: str, version: str, keep_alive: bool,
                upgrade: bool, host: str | None, host_count: int, special: bool, kept: tuple | None, plain: bool,
                complete: bool) -> None:
        """The compiled parser's one call per request head: on_url, on_header and
        on_headers_complete above in one (it made their size checks while the head arrived). It
        calls on_message_begin only for a head that took more than one read. `kept`: the header
        lines the upstream gets, as the parser encoded them (`Request.kept`); `plain`: nothing
        `_validate` checks can fail; `complete`: no body follows, and the parser will not call
        on_message_complete (what it does is done here, before the exchange starts)."""
        cur = self.cur
        if cur is None:  # the whole head in one read: no header timeout to start
            cur = self.cur = _new_request(Request)  # `Request()` without its __init__ frame: the
            cur.buffer = []  # headers are set below (a Python call saved is ~0.9k instructions)
        self.in_head = False
        self.head_bytes = 0
        self.head_left = head_left  # what chunked trailers may still take (on_header)
        cur.url = url
        cur.headers = headers
        cur.kept = kept
        if host_count:
            cur.host_count = host_count
            cur.host = host
        if special:  # Content-Length, Transfer-Encoding, Expect, User-Agent or Referer: as on_header
            for name, value in headers:
                kind = _SPECIAL.get(name.lower())
                if kind == 2:
                    cur.cl_count += 1
                elif kind == 3:
                    cur.te = value if cur.te is None else cur.te + b"," + value
                elif kind == 4:
                    cur.expect = value.strip().lower() == b"100-continue"
                elif kind == 5:
                    cur.ua = value
                elif kind == 6:
                    cur.referer = value
        if len(headers) > self.max_headers:
            raise _Reject(431, "too many request headers")
        cur.method = method
        cur.version = version
        cur.keep_alive = keep_alive
        cur.upgrade = upgrade
        if not plain:
            self._validate(cur)
        self.requests += 1
        if complete:  # on_message_complete's part (no exchange to tell yet)
            cur.complete = True
            self.cur = None
            if self.active is None:  # `_start` for a complete request, inlined: this runs per request
                self.deadline_kind = None
                # `Exchange(self, cur)` without its __init__ frame (keep both in step, and in the
                # same order: instances share their attribute dict's keys only in one order)
                ex = self.active = _new_request(Exchange)
                ex.server = self
                ex.req = cur
                cur.exchange = ex
                ex.worker = worker = self.worker
                ex.loop = loop = self.loop
                ex.runtime = worker.runtime
                ex.t0 = loop.time()
                ex.out = []
                ex.start()
                return
        if self.active is None:
            self._start(cur)
        else:
            if not self.queue:
                self.queue = collections.deque()
            self.queue.append(cur)
            self.pause("pipeline")

    def on_body(self, body: bytes) -> None:
        cur = self.cur
        if self.deadline_kind == "body":  # an idle timeout, as nginx's: it runs from the last read
            self.deadline = self.loop.time() + self.worker.client_body_timeout
        if cur.discard:  # answered already (see exchange_done): read and drop, up to a bound
            cur.body_size += len(body)
            if cur.body_size > cur.discard:
                self.close()
            return
        cur.body_size += len(body)
        limit = self.worker.max_body
        if limit and cur.body_size > limit:
            raise _Reject(413, "request body too large")
        if cur.body_limit and cur.body_size > cur.body_limit:  # set by a plugin (request-size-limiting)
            raise _Reject(413, "request body over the plugin's limit", "Request size limit exceeded")
        if cur.exchange is not None:
            cur.exchange.client_body(body)
        else:
            cur.buffer.append(body)
            cur.buffered += len(body)

    def on_message_complete(self) -> None:
        cur = self.cur
        cur.complete = True
        self.cur = None
        if cur.discard:  # the rest of an answered request's body is gone: the connection goes on
            self.set_deadline(None, 0)
            self._next(self.active, True, None)
        elif cur.exchange is not None:
            cur.exchange.client_body_done()

    # -- checks httptools does not make
    def _validate(self, cur: Request) -> None:
        if cur.cl_count > 1:
            raise _Reject(400, "duplicate Content-Length")
        if cur.te is not None:
            if cur.cl_count:
                raise _Reject(400, "both Content-Length and Transfer-Encoding")
            if cur.te.strip().lower() != b"chunked":
                raise _Reject(501, "unsupported Transfer-Encoding", "Not implemented")
            cur.chunked = True
        if cur.host_count > 1:
            raise _Reject(400, "duplicate Host")
        if cur.version == "1.1" and not cur.host_count:
            raise _Reject(400, "HTTP/1.1 request without Host")
        if cur.method == "CONNECT" or cur.method == "TRACE":
            raise _Reject(405, f"{cur.method} is not supported")
        if cur.version[0] != "1" and cur.version != "0.9":
            raise _Reject(505, f"HTTP/{cur.version} on an HTTP/1.x connection", "HTTP Version Not Supported")
        if cur.cl_count:
            cl = next(v for k, v in cur.headers if k.lower() == b"content-length")
            cur.content_length = int(cl)
            limit = self.worker.max_body
            if limit and cur.content_length > limit:
                raise _Reject(413, "request body too large")

    def _parse_error(self, e: Exception) -> None:
        ctx = e.__context__ or e.__cause__
        if isinstance(ctx, _Reject):
            self.reject(ctx.status, str(ctx), ctx.body_message)
            return
        if isinstance(ctx, Exception) and self.active is not None:
            log.error("proxy error on %s:%s: %r", self.client_ip, self.client_port, ctx, exc_info=ctx)
        if str(e) == "Invalid HTTP version":  # llhttp takes 0.9, 1.0, 1.1 and 2.0 only
            self.reject(505, "unsupported HTTP version", "HTTP Version Not Supported")
            return
        self.reject(400, f"invalid request: {e}")

    def reject(self, status: int, why: str, body_message: str | None = None) -> None:
        """Answer an error the protocol requires and close the connection."""
        if self.closed:
            return
        log.info("client %s:%s: %s (%d)", self.client_ip, self.client_port, why, status)
        self.worker.access.error_line(self.client_ip, status)
        active = self.active
        if active is not None and active.done:  # answered; the rest of its body was being dropped
            self.close()
            return
        if active is not None and active.response_started:
            active.abort_all()
            return
        if active is not None:
            active.detach_upstream()
        self.transport.write(render_response(status, error_body(status, body_message), keep_alive=False))
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    # -- exchanges
    def _start(self, req: Request) -> None:
        if not req.complete and (req.chunked or req.content_length):
            self.set_deadline("body", self.worker.client_body_timeout)
        else:
            self.deadline_kind = None  # set_deadline(None, ...), without the call
        ex = Exchange(self, req)
        self.active = ex
        ex.start()

    def exchange_done(self, ex: Exchange, keep_alive: bool, now: float | None = None) -> None:
        """The response is complete: next pipelined request, idle, or close. (`_relay.
        ResponseRelay._relayed_end` does the kept-alive case with a lazy timer that stays inline:
        keep both in step.)"""
        self.worker.requests += 1
        req = ex.req
        if keep_alive and req.complete and not self.queue and not self.closed and not self.eof:
            self.active = None  # `_next` for a kept-alive connection with nothing queued, inlined
            timeout = self.worker.keepalive_timeout
            if now is not None and self.timer is not None and timeout > 0 and now + timeout >= self.timer_at:
                self.deadline_kind = "idle"  # `set_deadline`, inlined where its timer stays: it
                self.deadline = now + timeout  # looks at the deadline when it fires (_on_timer)
            else:
                self.set_deadline("idle", timeout, now)
            return
        if keep_alive and not req.complete and not self.closed and discard_limit(req):
            # The proxy answered before the body ended (a 404, a plugin's 401): as nginx does, the
            # rest is read and dropped within client_body_timeout, then the connection goes on.
            req.discard = req.body_size + discard_limit(req)
            self.paused.discard("buffer")
            self.paused.discard("upstream")
            if not self.paused:
                self.transport.resume_reading()
            self.set_deadline("body", self.worker.client_body_timeout, now)
            return
        self._next(ex, keep_alive, now)

    def _next(self, ex: Exchange, keep_alive: bool, now: float | None) -> None:
        self.active = None
        if not keep_alive or self.closed or (self.eof and not self.queue):
            self.close()
            return
        if self.queue and self.write_paused:  # a pipelining client that does not read its answers:
            self.pause("write")  # the next waits for resume_writing, and nothing more is read
            self.set_deadline("idle", self.worker.keepalive_timeout, now)
        elif self.queue:
            nxt = self.queue.popleft()
            if not self.queue:
                self.resume("pipeline")
            self._start(nxt)
        else:
            self.set_deadline("idle", self.worker.keepalive_timeout, now)

    def _upgrade(self, rest: bytes) -> None:
        ex = self.active
        if ex is None or self.queue:  # an Upgrade on a queued (pipelined) request: not supported
            self.reject(400, "upgrade on a pipelined request")
            return
        self.tunnel = ex  # from now on client bytes are the tunnel's, held until the 101
        if rest:
            ex.tunnel_from_client(rest)
