"""One HTTP/2 request stream through the shared pipeline: route, plugins, peer, leg, relay.

Rules:
- The pipeline is the HTTP/1.1 one (`decide`, plugin phases, `upstream_target`,
  `upstream_host`, the header policy); only framing differs. The stream keeps the runtime it
  started with.
- gRPC requests (content-type application/grpc) run plugins with scheme `grpc`/`grpcs`; a
  route whose protocols are only gRPC answers other requests 415 (as Kong); every answer the
  proxy makes itself to a gRPC request is a gRPC error (`_grpc`).
- Services with protocol `grpc`/`grpcs` are reached over HTTP/2 (`_h2up`), the others over
  HTTP/1.1 through the worker's pool (`_h1leg`). Connect failures go to the next peer while
  `retries` last (then 502, or 504 on a timeout); after the response head went out an upstream
  failure resets the stream.
- Request body: held in the stream until a leg is ready, then handed over; bytes are
  acknowledged to the client when the leg has taken them (`leg.backlog` low), so the client's
  window, not memory, bounds what waits. Plugins that buffer the request get it whole.
- Response body: framed within the client's windows (`pump`); what does not fit waits here and
  the leg pauses its upstream (HTTP/1.1: pause_reading; HTTP/2: no WINDOW_UPDATE upstream).
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Any

import h2.errors
import h2.exceptions

from meshway import __version__
from meshway.proxy import (
    Context, Forwarded, decide, downstream_response_headers, error_body, run_body, run_phase, start_log,
    upstream_host, upstream_request_headers, upstream_target,
)

from .. import _core, _tries
from .._context import new_context
from .._engine import replaced_head, run_rewrite
from .._errors import ALLOW, failure_body
from .._headers import encode_request_headers, forwarded_dynamic
from .._paths import escape_path, escape_query
from .._pipeline import enter_chain, rewritten
from ._grpc import grpc_error_headers, is_grpc
from ._headers import Malformed, RequestHead, encode_response, encode_trailers

__all__ = ["Stream"]

log = logging.getLogger("meshway.proxy")
_SERVER = f"meshway/{__version__}".encode()
_LOW_WATER = 64 * 1024
_NO_PEER = "failure to get a peer from the ring-balancer"
_NON_GRPC = "Non-gRPC request matched gRPC route"
_GRPC_ONLY = frozenset({"grpc", "grpcs"})
_ROUTES_MAX = 4096  # `Runtime.h2_routes` entries (cleared when full, as `decide`'s cache)


class Stream:
    """Drives one HTTP/2 request from its HEADERS frame to its last response frame."""

    # Initial values of the fields that are only ever reassigned: one class attribute each
    # instead of a store per request (fields mutated in place are set in __init__).
    t_sent = t_headers = 0.0
    req: RequestHead | None = None
    grpc = False
    req_trailers: list | None = None
    req_size = 0
    unacked = 0
    body_at = 0.0  # when the request body last made progress (client_body_timeout, see _server)
    target = match = ctx = chain = peer = leg = decision = None
    tries = 0
    tried: Any = frozenset()  # the peers that failed (a new set each time one is added: rare)
    last_error: tuple[int, str] | None = None
    path, query = "/", ""
    body_held = False
    out_end = False
    out_ended = False
    out_trailers: list | None = None
    response_started = False
    done = False
    status = 0
    sent_bytes = 0  # response DATA payload bytes
    # The log serializer's sizes, as nginx counts an HTTP/2 stream: the request's header block
    # (set by the server) and the response's frame bytes other than DATA payloads (frame heads,
    # HEADERS and trailers blocks).
    head_size = 0
    frame_bytes = 0
    mesh_peer = None  # (the access log's mesh fields: never on this side)

    def __init__(self, server: Any, sid: int, block: list, ended: bool):
        self.server = server
        self.sid = sid
        self.block = block
        self.worker = worker = server.worker
        self.loop = loop = server.loop
        self.runtime = worker.runtime
        self.t0 = loop.time()
        self.req_done = ended
        self.req_buf: list[bytes] = []
        self.out: collections.deque[bytes] = collections.deque()

    # -- start: decode, route, plugins ------------------------------------------------------
    def start(self) -> None:
        # One function for the common request (routing-cache hit, no plugins, an HTTP/1.1
        # service): decode, route, pick the peer and start the leg; the rest goes the long way.
        server = self.server
        try:
            self.req = req = server.decode_request(self.block)
        except Malformed as e:
            server.malformed(self, str(e))
            return
        except ValueError:
            self.req = RequestHead()
            self.respond(405, error_body(405))
            return
        ctype = req.content_type
        if ctype is not None:
            self.grpc = is_grpc(ctype)
        url = req.url.decode("latin-1")
        if not url.startswith("/"):
            self.respond(400, error_body(400))
            return
        limit = self.worker.max_body
        if limit and req.content_length is not None and req.content_length > limit:
            self.respond(413, error_body(413))
            return
        path, _, query = url.partition("?")
        self.path = path
        self.query = query
        if not url.isascii() or "#" in query:  # HTTP/1.1's parser would have refused these bytes
            self.query = escape_query(query)
        runtime = self.runtime
        if runtime.rewrite:  # global `rewrite` plugins run before the router (Kong)
            self._rewrite()
            return
        if runtime.router.needs_headers:
            self._route()
            return
        key = (req.method, req.authority, path, server.scheme, server.route_port, server.sni, server.dst)
        d = runtime.h2_routes.get(key)
        if d is None:  # `decide`'s answer, kept with whether it can take the path below
            d = self._route_now(req.method, None)
            fast = not d.status and not d.target.contextual and not _grpc_only(d.target.route.get("protocols")) \
                and d.target.service.scheme not in _GRPC_ONLY
            routes = runtime.h2_routes
            if len(routes) >= _ROUTES_MAX:
                routes.clear()
            if d.headers is None:  # (redirects depend on the query: `decide` does not keep them either)
                routes[key] = d if fast else False
            if not fast:
                self._routed(d)
                return
        elif d is False:
            self._route()
            return
        # `_routed` and `proceed` for that decision (no Context, no gRPC, a first try)
        self.target = target = d.target
        self.match = d.match
        self.decision = d
        service = target.service
        # (a fixed service's balancer selects its one peer when nothing was tried yet)
        peer = service.balancer.peer if service.fixed else service.balancer.select(None, exclude=self.tried)
        if peer is None:
            self.respond(503, error_body(503, _NO_PEER))
            return
        self.peer = peer
        self.tries = 1
        self.leg = leg = _H1Leg(self, peer) if _H1Leg is not None else _leg_class(False)(self, peer)
        leg.start()

    def _route(self) -> None:
        req, runtime = self.req, self.runtime
        self._routed(self._route_now(req.method, self._header if runtime.router.needs_headers else None))

    def _route_now(self, method: str, headers: Any) -> Any:
        server = self.server
        return decide(self.runtime, method, self.req.authority, self.path, self.query, server.scheme,
                      port=server.route_port,
                      headers=headers, sni=server.sni, dst=server.dst)

    def _routed(self, d: Any) -> None:
        """Go on from a routing decision: its own answer, the route's plugins, or the upstream.
        A Context made for the rewrite phase gets the route; otherwise one is made if needed."""
        if d.status:
            self.respond(d.status, d.body, d.headers)
            return
        self.target, self.match, self.decision = d.target, d.match, d
        if not self.grpc and _grpc_only(d.target.route.get("protocols")):
            self.respond(415, error_body(415, _NON_GRPC))
            return
        if self.ctx is None and not d.target.contextual:
            self.proceed()
            return
        enter_chain(self, d, self.req_done)

    def _rewrite(self) -> None:
        """Build the Context before routing and run the global rewrite chain on it."""
        self.chain = self.runtime.global_chain  # until routed: a rewrite exit logs with it
        self.ctx = self._new_context(None, None, {})
        pending = run_rewrite(self.runtime.plugins, self.ctx)
        if pending is not None:
            self.loop.create_task(pending).add_done_callback(lambda _t: self._after_rewrite(True))
        else:
            self._after_rewrite(False)

    def _after_rewrite(self, later: bool) -> None:
        """Route on what the rewrite phase left, then go on as `_route` does with the Context."""
        if self.done:
            return
        req, ctx = self.req, self.ctx
        if ctx.exited is not None:
            ex = ctx.exited
            self.respond(ex.status, ex.body, [*ctx.response_headers, *ex.headers], exited=True)
        else:
            changed = rewritten(ctx, req.method, req.authority, self.path, self.query)
            if changed is not None:
                _, req.authority, self.path, self.query = changed
            self._routed(self._route_now(ctx.method, ctx.get_header if self.runtime.router.needs_headers else None))
        if later:
            self.server.flush()

    def _header(self, name: str) -> str | None:
        low = name.lower().encode("latin-1")
        for k, v in self.req.headers:
            if k == low:
                return v.decode("latin-1")
        return None

    @property
    def scheme(self) -> str:
        """The request's protocol as plugins and logs see it."""
        tls = self.server.scheme == "https"
        return ("grpcs" if tls else "grpc") if self.grpc else self.server.scheme

    def _new_context(self, route: Any, service: Any, captures: Any) -> Context:
        req, server = self.req, self.server
        headers = [(b"host", req.authority.encode("latin-1"))] if req.authority else []
        ctx = Context(None, server.client_ip, req.method, self.scheme, req.authority or "", self.path, self.query,
                      headers + list(req.headers), route, service.entity if service else None, captures, time.time())
        ctx.http_version = "2.0"
        if server.trusted:
            ctx.client_trusted = True
        return ctx

    def _run_access(self) -> None:
        ctx = self.ctx
        if self.chain.buffers_request:  # the body is whole: held until client_end, or it ended with the head
            ctx.body = b"".join(self.req_buf)
        pending = run_phase(self.chain, "access", ctx) if "access" in self.chain.phases else None
        if pending is not None:
            self.loop.create_task(pending).add_done_callback(lambda _t: self._after_access(True))
        else:
            self._after_access(False)

    def _after_access(self, later: bool) -> None:
        if self.done:
            return
        ctx = self.ctx
        if ctx.exited is not None:
            ex = ctx.exited
            self.respond(ex.status, ex.body, [*ctx.response_headers, *ex.headers], exited=True)
        else:
            self.proceed()
        if later:
            self.server.flush()

    # -- upstream ---------------------------------------------------------------------------
    def proceed(self) -> None:
        service = self.target.service
        ctx = self.ctx
        if ctx is None:
            peer = service.balancer.select(None, exclude=self.tried)
        else:  # plugins see the tries (Kong's balancer_data.tries), and may hash on the request
            peer = _tries.pick(ctx, service, self.tried)
        if peer is None:
            if self.last_error is not None:
                self.respond(self.last_error[0], failure_body(*self.last_error))
            else:
                self.respond(503, error_body(503, _NO_PEER))
            return
        self.peer = peer
        self.tries += 1
        self.leg = _leg_class(service.scheme in _GRPC_ONLY)(self, peer)
        self.leg.start()

    def upstream_headers(self) -> tuple[str, bytes, list[tuple[bytes, bytes]]]:
        """Method, request target and HTTP/1-style header list (with Host) for the upstream."""
        req, ctx, target = self.req, self.ctx, self.target
        headers = ctx.headers if ctx is not None else req.headers
        if ctx is not None:
            path = upstream_target(target, self.match, self.query, ctx.upstream_path, ctx.upstream_query)
            ctx.upstream_uri = path.decode("latin-1")
        else:
            path = upstream_target(target, self.match, self.query)
        host = upstream_host(target, self.peer, req.authority)
        auth = req.authority or ""
        client_host = auth.rsplit(":", 1)[0] if auth and not auth.endswith("]") else auth
        out = upstream_request_headers(headers, host.encode("latin-1"), self._forwarded(client_host), via=self.worker.via)
        return (ctx.method if ctx is not None else req.method), path, out

    def upstream_wire(self) -> tuple[str, bytes, bytes]:
        """`upstream_headers` as HTTP/1.1 header lines (no framing): one pass, and the upstream
        path and forwarded lines kept on the routing decision, as the HTTP/1.1 codec does."""
        req, server, d = self.req, self.server, self.decision
        if self.ctx is None and d is not None and not server.trusted:
            wire = d.wire
            if wire is None:  # per routing decision (same method, host, path): computed once
                auth = req.authority or ""
                client_host = auth.rsplit(":", 1)[0] if auth and not auth.endswith("]") else auth
                wire = d.wire = (upstream_target(self.target, self.match, ""),
                                 forwarded_dynamic(self._forwarded(client_host)))
            host = upstream_host(self.target, self.peer, req.authority).encode("latin-1")
            lines = encode_request_headers(req.headers, host, server.ip_b, server.fwd_fixed, wire[1],
                                           via=self.worker.via)
            if lines is not None:
                return req.method, wire[0] + b"?" + self.query.encode("latin-1") if self.query else wire[0], lines
        method, path, headers = self.upstream_headers()
        return method, path, b"".join([b"%s: %s\r\n" % pair for pair in headers])

    def upstream_head(self, core: Any, length: int) -> bytes | None:
        """The whole HTTP/1.1 request head `upstream_wire` and `H1Leg._encode_head` make, from
        the compiled HTTP/1.1 core's encoders (`core`: `_h1parse`), for a request without
        plugins from an untrusted client; None where the Python path must make it."""
        req, server, d = self.req, self.server, self.decision
        if d is None or server.trusted or not -2 <= length < 1 << 62:
            return None
        kept = core.encode_request_headers(req.headers)
        if kept is None:
            return None
        wire = d.wire
        if wire is None:  # per routing decision, as in upstream_wire
            auth = req.authority or ""
            client_host = auth.rsplit(":", 1)[0] if auth and not auth.endswith("]") else auth
            wire = d.wire = (upstream_target(self.target, self.match, ""), forwarded_dynamic(self._forwarded(client_host)))
        target, peer = self.target, self.peer
        if target.preserve_host and req.authority:
            host = upstream_host(target, peer, req.authority).encode("latin-1")
        else:
            last = target.last_host  # (peer, Host), as the HTTP/1.1 exchange keeps it
            if last[0] is peer:
                host = last[1]
            else:
                cache = target.host_cache
                host = cache.get(peer)
                if host is None:
                    host = cache[peer] = upstream_host(target, peer, None).encode("latin-1")
                target.last_host = (peer, host)
        path = wire[0] + b"?" + self.query.encode("latin-1") if self.query else wire[0]
        return core.request_head(req.method, path, host, kept[0], kept[1], server.ip_b, wire[1], server.fwd_fixed,
                                 self.worker.via, length)

    def _forwarded(self, client_host: str) -> Forwarded:
        server, target, match = self.server, self.target, self.match
        return Forwarded(server.client_ip, server.scheme, client_host, server.listen_port, escape_path(self.path),
                         escape_path(match.matched_path) if target.strip_path and match.entry.prefix else None,
                         server.trusted)

    def replaced_body(self) -> bytes | None:
        ctx = self.ctx
        return (ctx.body or b"") if ctx is not None and ctx.body_replaced else None

    def up_ready(self) -> None:
        """The leg can take the request body: hand over what waited."""
        self.t_sent = self.loop.time()
        leg = self.leg
        if self.replaced_body() is None:
            for chunk in self.req_buf:
                leg.send(chunk)
        self.req_buf.clear()
        if self.req_done:
            leg.end(self.req_trailers)
        self.up_drained()

    def up_drained(self) -> None:
        """The leg's backlog is low: acknowledge what the client sent."""
        if self.unacked and self.leg is not None and self.leg.backlog <= _LOW_WATER:
            n, self.unacked = self.unacked, 0
            self.server.ack(self.sid, n)
            if n > _LOW_WATER:  # a backlog: the client may have waited for this window, not idled
                self.body_at = self.loop.time()

    def up_failed(self, status: int, why: str, retry: bool, same_peer: bool = False) -> None:
        """The leg failed; `same_peer` when the peer itself is fine (refused stream, GOAWAY)."""
        if self.done:
            return
        peer = self.peer
        log.error("upstream %s:%s for %s %s: %s", peer.host, peer.port, self.req.method, self.path, why)
        self.leg = None
        if not same_peer:
            self.tried = {*self.tried, peer}
        self.last_error = (status, why)
        if self.ctx is not None and not self.response_started:
            _tries.failed(self.ctx, status, connecting=retry)
        if self.response_started:
            self._fail_after_head()
        elif retry and self.tries <= self.target.service.retries:
            self.proceed()
        else:
            self.respond(status, failure_body(status, why))

    # -- client body -----------------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        n = len(data)
        if not n:
            return  # an empty DATA frame (often the one carrying END_STREAM)
        self.req_size += n
        limit = self.worker.max_body
        if limit and self.req_size > limit:
            self.server.ack(self.sid, n)
            if self.response_started:
                self._fail_after_head()
            else:
                self.respond(413, error_body(413))
            return
        if self.done:
            self.server.ack(self.sid, n)
            return
        leg = self.leg
        if leg is not None and leg.ready and not self.body_held:
            leg.send(data)
            self.unacked += n
            self.up_drained()
            return
        self.req_buf.append(data)
        if self.body_held:
            self.server.ack(self.sid, n)
        else:
            self.unacked += n

    def client_end(self, trailers: list | None) -> None:
        self.req_done = True
        self.req_trailers = trailers
        if self.done:
            return
        if self.body_held:
            self.body_held = False
            self._run_access()
        elif self.leg is not None and self.leg.ready:
            self.leg.end(trailers)

    # -- response ----------------------------------------------------------------------------
    def up_head(self, status: int, raw: list[tuple[bytes, bytes]], ended: bool) -> None:
        if self.done:
            return
        self.t_headers = self.loop.time()
        self.status = status
        codec = self.server.codec
        hdrs = None
        if codec is not None and _core.compiled is not None and raw.__class__ is list:
            hdrs = _core.compiled.response_header_pairs(raw)  # the same pairs, in C
        if hdrs is None:
            hdrs = downstream_response_headers(raw)
        body_phase = False
        ctx = self.ctx
        if ctx is not None:
            self._response_phase(ctx, status, hdrs)
            if ctx.exited is not None:  # a response phase answered instead (Kong: exit in header_filter)
                leg, self.leg = self.leg, None
                if leg is not None:
                    leg.abort()
                self.respond(ctx.exited.status, ctx.exited.body, replaced_head(ctx), exited=True)
                return
            status = self.status = ctx.response_status or status  # a response phase may set it (Kong's ngx.status)
            hdrs = ctx.response_headers
            body_phase = "body" in self.chain.phases
        if body_phase:
            length = None
        elif codec is not None:
            length = codec.first_value(raw, b"content-length")
        else:
            length = next((v for k, v in raw if k.lower() == b"content-length"), None)
        worker = self.worker
        via = worker.via  # `_extra`, inlined: once per response
        extra = [] if via is None else [(b"via", via)]
        if worker.latency_tokens:
            extra.append((b"x-meshway-upstream-latency", b"%d" % ((self.t_headers - self.t_sent) * 1000)))
            extra.append((b"x-meshway-proxy-latency", b"%d" % ((self.t_sent - self.t0) * 1000)))
        block = None if codec is None else codec.response_fields(status, hdrs, extra, length)
        if block is None:
            block = encode_response(status, hdrs, extra, length)
        self.response_started = True
        conn = self.server.h2  # `H2Server.send_headers`, inlined
        before = len(conn._data_to_send)
        try:
            conn.send_headers(self.sid, block, ended and not body_phase)
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError) as e:
            log.info("http2 stream %s to %s: headers not sent: %r", self.sid, self.server.client_ip, e)
        else:
            self.frame_bytes += len(conn._data_to_send) - before
        if ended:
            self.out_end = True
            if body_phase:
                self.up_end(None)
            else:
                self._finish()

    def _extra(self) -> list[tuple[bytes, bytes]]:
        worker, out = self.worker, []
        if worker.via is not None:
            out.append((b"via", worker.via))
        if worker.latency_tokens:
            out.append((b"x-meshway-upstream-latency", b"%d" % ((self.t_headers - self.t_sent) * 1000)))
            out.append((b"x-meshway-proxy-latency", b"%d" % ((self.t_sent - self.t0) * 1000)))
        return out

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
                log.error("async response phases are not supported on HTTP/2 yet (request %s)", ctx.request_id)

    def up_data(self, data: bytes) -> None:
        if self.done:
            return
        if self.ctx is not None and "body" in self.chain.phases:
            data = run_body(self.chain, self.ctx, data, False)
        if data:
            if not self.out:
                self.server.dirty.append(self)  # `schedule`: framed at the next flush
            self.out.append(data)

    def up_end(self, trailers: list | None) -> None:
        if self.done:
            return
        ctx = self.ctx
        idle = not self.out  # nothing scheduled to pump yet (up_data schedules when it fills `out`)
        if ctx is not None and "body" in self.chain.phases:
            ctx.response_trailers = trailers  # the last body call may read them, or take them (grpc-web)
            tail = run_body(self.chain, ctx, b"", True)
            trailers = ctx.response_trailers
            if tail:
                self.out.append(tail)
        if idle:
            self.server.schedule(self)
        self.out_end = True
        self.out_trailers = encode_trailers(trailers) if trailers else None

    def pump(self) -> None:
        """Frame pending response data within the client's windows; end the stream when due."""
        server, out = self.server, self.out
        if self.done or server.closed:
            return
        conn = server.h2
        if len(out) == 1 and self.out_end and not self.out_trailers and not server.write_paused:
            # The whole rest of the response in one chunk (a small answer): one DATA frame with
            # END_STREAM when the windows take it, as the loop below would frame it.
            chunk = out[0]
            n = len(chunk)
            if conn.send_last(self.sid, chunk):
                out.clear()
                self.out_end = False
                self.out_ended = True
                self.sent_bytes += n
                self.frame_bytes += 9
                leg = self.leg
                if leg is not None and (leg.__class__ is not _H1Leg or leg.paused):  # (H1Leg.consumed: nothing)
                    leg.consumed(n)
                    leg.resume()
                self._finish()
                return
        while out and not server.write_paused:
            window = conn.sendable(self.sid)
            if window <= 0:
                break
            chunk = out[0]
            n = min(len(chunk), window)
            last = n == len(chunk) and len(out) == 1 and self.out_end and not self.out_trailers
            conn.send_data(self.sid, chunk[:n] if n < len(chunk) else chunk, end_stream=last)
            if last:
                self.out_end = False
                self.out_ended = True
            self.sent_bytes += n
            self.frame_bytes += 9  # one DATA frame: n is within the frame size (sendable)
            if self.leg is not None:
                self.leg.consumed(n)
            if n < len(chunk):
                out[0] = chunk[n:]
            else:
                out.popleft()
        if out:
            if self.leg is not None:
                self.leg.pause()
            return
        if self.leg is not None:
            self.leg.resume()
        if self.out_end:
            if self.out_trailers:
                self.frame_bytes += server.send_headers(self.sid, self.out_trailers, True)
            else:
                conn.end_stream(self.sid)
                self.frame_bytes += 9
            self._finish()
        elif self.out_ended:
            self._finish()

    def flush(self) -> None:
        self.server.flush()

    # -- endings ------------------------------------------------------------------------------
    def respond(self, status: int, body: bytes, headers: list | None = None, exited: bool = False) -> None:
        """Answer from the proxy itself (errors, redirects, plugin exits)."""
        if self.done:
            return
        self.status = status
        if self.ctx is not None:
            self.ctx.response_status = status
            self.ctx.response_source = "exit" if exited else "kong"
        if self.grpc:
            self.frame_bytes += self.server.send_headers(self.sid, grpc_error_headers(status, body, headers), True)
            self._finish()
            return
        hdrs = [(k.lower(), v) for k, v in headers or ()]
        if body and not any(k == b"content-type" for k, _ in hdrs):
            hdrs.append((b"content-type", b"application/json; charset=utf-8"))
        hdrs.append((b"server", _SERVER))
        if status == 405 and not any(k == b"allow" for k, _ in hdrs):
            hdrs.append((b"allow", ALLOW))
        head = self.req is not None and self.req.method == "HEAD"
        send_body = bool(body) and not head
        self.frame_bytes += self.server.send_headers(self.sid, encode_response(status, hdrs, (), b"%d" % len(body)),
                                                     not send_body)
        self.response_started = True
        if send_body:
            self.out.append(body)
            self.out_end = True
            self.pump()
        else:
            self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        server = self.server
        now = self.loop.time()  # one clock read for the pool, the access line and the idle clock
        leg, self.leg = self.leg, None
        if leg is not None:
            leg.finish(now)
        if not self.req_done:
            server.reset(self.sid, h2.errors.ErrorCodes.NO_ERROR)  # answered early: stop the upload
        if self.ctx is None:
            if self.req is not None:
                self.worker.access.h1_line(self, now)  # (an HTTP/2 stream has the fields it takes)
        else:
            self._log()
        server.stream_done(self, now)

    def _log(self) -> None:
        if self.req is not None:
            self.worker.access.line(self)
        ctx = self.ctx
        if ctx is not None and "log" in self.chain.phases:
            now = self.loop.time()
            ctx.latencies = {"request": int((now - self.t0) * 1000),
                             "proxy": int((self.t_headers - self.t_sent) * 1000) if self.t_headers else -1,
                             "kong": int((self.t_sent - self.t0) * 1000) if self.t_sent else int((now - self.t0) * 1000)}
            # Kong's request.size and response.size: nginx's $request_length and $bytes_sent
            ctx.request_size, ctx.response_size = self.head_size + self.req_size, self.frame_bytes + self.sent_bytes
            pending = start_log(self.chain, ctx)
            if pending is not None:  # a log phase waits for I/O: it finishes in a Task
                self.loop.create_task(pending)

    def _fail_after_head(self) -> None:
        self.server.reset(self.sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        self.req_done = True
        self.status = self.status or 502
        self._finish()

    def cancel(self, internal: bool = False) -> None:
        """The client reset the stream or went away (or a bug ended it): drop the upstream side."""
        if self.done:
            return
        self.done = True
        self.status = self.status or (500 if internal else 499)
        leg, self.leg = self.leg, None
        if leg is not None:
            leg.abort()
        if self.req is not None:
            self.worker.access.line(self)


def _grpc_only(protocols: Any) -> bool:
    """Whether a route's `protocols` are gRPC ones only (then other requests get 415)."""
    return bool(protocols) and all(p in _GRPC_ONLY for p in protocols)


_LEGS: dict[bool, Any] = {}
_H1Leg: Any = None  # `_leg_class(False)` once it was loaded


def _leg_class(grpc: bool) -> Any:
    # Imported on first use (a worker without gRPC services never loads `_h2up`), then cached:
    # an import statement per request costs a lookup in sys.modules and more.
    cls = _LEGS.get(grpc)
    if cls is None:
        if grpc:
            from ._h2leg import H2Leg as cls
        else:
            global _H1Leg
            from ._h1leg import H1Leg as cls
            _H1Leg = cls
        _LEGS[grpc] = cls
    return cls
