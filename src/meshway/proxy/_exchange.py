"""One proxied HTTP/1.1 request: route, plugins, peer, upstream connection, response relay.

Rules:
- The exchange holds the runtime it started with; a config swap does not touch it.
- The response side (relay, framing, pooling, tunnels) lives in `_relay.ResponseRelay`.
- Framing towards the upstream: the client's Content-Length, or chunked. `Expect: 100-continue` is answered by the proxy once the request may proceed
  (after access plugins) and is not forwarded.
- Upstream failures: connect refused/reset -> next peer while `retries` last, then 502; connect
  or read timeout -> 504; garbage or a premature close -> 502. A pooled connection that closed
  before answering is replaced once by a fresh one when the request can be re-sent.
  After the response head went out an upstream failure can only cut the client connection.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

from .meshhooks import MESH_ALPN, MESH_SNI, peer_spiffe_id

from . import _core, _tries
from ._context import Context, new_context
from ._engine import run_phase, run_rewrite, start_log
from ._errors import NO_PEER, connect_failure, error_body, failure_body, render_response
from ._h1routes import listener_routes, remember
from ._headers import Forwarded, encode_request_headers, forwarded_dynamic, upstream_request_headers
from ._paths import escape_path
from ._pipeline import decide, enter_chain, rewritten, upstream_host, upstream_target
from ._relay import ResponseRelay, _has_length, _is_chunked, _via_line
from ._runtime import origin_context, origin_of

__all__ = ["Exchange", "Request", "discard_limit"]

log = logging.getLogger("meshway.proxy")
_BUFFER_LIMIT = 256 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_GRPC_SCHEMES = frozenset({"grpc", "grpcs"})


class Request:
    """A request head as parsed, and its body while nothing upstream takes it yet."""

    url = b""
    method = "GET"
    version = "1.1"
    keep_alive = True
    upgrade = False
    cl_count = 0
    te: bytes | None = None
    chunked = False
    host: str | None = None
    host_count = 0
    expect = False
    content_length: int | None = None
    body_size = 0
    body_limit = 0
    buffered = 0
    complete = False
    exchange: Exchange | None = None
    ua = b"-"
    referer = b"-"
    discard = 0  # answered before its body ended: body_size at which to give up reading it (_http1)
    kept: tuple | None = None  # the compiled parser's (header lines to forward, client X-Forwarded-For)

    def __init__(self) -> None:  # (`_http1.H1Server.on_head` makes one without it: keep both in step)
        self.headers: list[tuple[bytes, bytes]] = []
        self.buffer: list[bytes] = []

    def read_whole(self) -> bool:
        """Nothing of it is left to read: complete, or without a body. httptools reports a bodiless
        request complete only after its head, when the answer may already have gone out; the
        connection can stay open (as Kong's own answers do). For a body still arriving see
        `_http1.discard_limit`."""
        return self.complete or (not self.chunked and not self.content_length)


_DISCARD_MAX = 1 << 20  # body bytes the proxy reads and drops after its own answer (else: close)


def discard_limit(req: Request) -> int:
    """How many more body bytes of `req` the proxy would read and drop to keep the connection
    (0: close instead): all of a Content-Length body up to 1 MiB more, a chunked one up to 1 MiB."""
    if req.chunked:
        return _DISCARD_MAX
    left = (req.content_length or 0) - req.body_size
    return left if 0 < left <= _DISCARD_MAX else 0


def request_head_size(req: Request) -> int:
    """The request line and header section as sent (nginx's part of $request_length before the
    body): `METHOD SP target SP HTTP/x.y CRLF`, one `name: value CRLF` per field, the empty line.
    The parser keeps names and values without the optional whitespace around a value, so a field
    counts as written with one space after its colon, as clients write them. Made at log time."""
    size = len(req.method) + len(req.url) + 14
    for name, value in req.headers:
        size += len(name) + len(value) + 4
    return size


class Exchange(ResponseRelay):
    """Drives one request from routing to the last response byte."""

    # Defaults as class attributes: a request only pays for the fields it changes.
    t_sent = t_headers = 0.0
    target: Any = None
    match: Any = None
    ctx: Context | None = None
    chain: Any = None
    conn: Any = None
    peer: Any = None
    tried: frozenset | set = frozenset()
    tries = 0
    last_error: tuple[int, str] | None = None
    path = "/"
    query = ""
    response_started = False
    done = False
    status = 0
    up_headers: list = []
    up_reason = b""
    up_keep_alive = False
    interim = False
    resp_chunked = False
    resp_close = False
    req_sent = False
    body_held = False
    continue_sent = False
    tunneling = False
    sent_bytes = 0  # response body bytes ($body_bytes_sent)
    # The other bytes sent to the client: status line and headers, an interim 100 Continue,
    # chunk framing; counted on paths with plugins only (the log serializer's response.size).
    head_bytes = 0
    decision: Any = None
    mesh_hop = False  # this try's upstream is another sidecar: mesh mutual TLS (meshway.mesh)
    mesh_peer: str | None = None  # that sidecar's SPIFFE id, for the access log
    zone_hop: Any = None  # this try's hop to another zone (meshhooks.ZoneHop: SNI, identity required)
    origin: tuple | None = None  # (scheme, host, port) the node's `origins` send this try's peer to

    def __init__(self, server: Any, req: Request):  # (`_http1.H1Server.on_head` makes one without it)
        self.server = server
        self.req = req
        req.exchange = self
        self.worker = server.worker
        self.loop = server.loop
        self.runtime = self.worker.runtime
        self.t0 = self.loop.time()
        self.out: list[bytes] = []

    # -- start: route and plugins -----------------------------------------------------------
    def start(self) -> None:
        req = self.req
        if self.runtime.rewrite:  # global `rewrite` plugins run before the router (Kong)
            self._rewrite()
            return
        server, runtime = self.server, self.runtime
        routes = server.routes if server.routes_of is runtime else listener_routes(server, runtime)
        key = (req.method, req.host, req.url)
        hit = routes.get(key) if routes is not None else None
        if hit is not None:  # same request line and Host as before on this listener: same answer
            d, self.path, self.query = hit
        else:
            d = self._decide(req, routes, key)
            if d is None:
                return
        if d.status or d.target.contextual:
            self._routed(d)
            return
        self.decision = d  # `_routed` for a route without plugins, inlined: this runs per request
        target = self.target = d.target
        self.match = d.match
        service, runtime = target.service, self.runtime
        if not service.direct or runtime.origins or runtime.mesh_dials:
            self.proceed()
            return
        # `proceed` for a service without an upstream (its one peer, its one pool key), or with an
        # upstream that neither hashes nor keeps per-request state (round-robin), where no
        # `origins` or mesh hop can change where it goes, inlined
        if service.fixed:
            peer, key = service.balancer.peer, service.fixed_key
        else:
            peer = service.balancer.only or service.balancer.select()
            if peer is None:  # no healthy peer: proceed answers
                self.proceed()
                return
            key = (peer.host, peer.port, service.pool_key)
        self.peer = peer
        self.tries = 1
        conn = self.worker.pool.take(key, self.t0)
        if conn is not None:
            self.send(conn)
        else:
            self._spawn_connect(peer, key)

    def _routed(self, d: Any) -> None:
        """Go on from a routing decision: its own answer, the route's plugins, or the upstream.
        A Context made for the rewrite phase gets the route; otherwise one is made if needed."""
        if d.status:
            self.respond(d.status, d.body, d.headers)
            return
        self.decision = d
        self.target, self.match = d.target, d.match
        if self.ctx is None and not d.target.contextual:
            self.proceed()
            return
        enter_chain(self, d, self.req.complete)

    def _rewrite(self) -> None:
        """Build the Context before routing and run the global rewrite chain on it."""
        if not self._split_target():
            return
        self.chain = self.runtime.global_chain  # until routed: a rewrite exit logs with it
        self.ctx = self._new_context(None, None, {})
        pending = run_rewrite(self.runtime.plugins, self.ctx)
        if pending is not None:
            self.loop.create_task(pending).add_done_callback(lambda _t: self._after_rewrite())
        else:
            self._after_rewrite()

    def _after_rewrite(self) -> None:
        """Route on what the rewrite phase left, then go on as `start` does, with the Context."""
        if self.server.closed or self.done:
            return
        ctx = self.ctx
        if not self._answered_exit(ctx):
            self._routed(self._route_rewritten(ctx))

    def _route_rewritten(self, ctx: Context) -> Any:
        req, runtime = self.req, self.runtime
        changed = rewritten(ctx, req.method, req.host, self.path, self.query)
        if changed is None and not runtime.router.needs_headers:  # as sent: the listener cache is right
            routes = listener_routes(self.server, runtime)
            key = (req.method, req.host, req.url)
            hit = routes.get(key) if routes is not None else None
            return hit[0] if hit is not None else self._decide(req, routes, key)
        # Never cached by request line: the same line may be rewritten differently next time.
        if changed is not None:
            _, req.host, self.path, self.query = changed
        return self._route_now(ctx.method, req.host, ctx.get_header if runtime.router.needs_headers else None)

    def _decide(self, req: Request, routes: dict | None, key: tuple) -> Any:
        if not self._split_target():
            return None
        d = self._route_now(req.method, req.host, self._header if self.runtime.router.needs_headers else None)
        if req.url[:1] == b"/":  # an absolute-form answer depends on a Host the key does not hold
            remember(routes, key, d, self.path, self.query)
        return d

    def _split_target(self) -> bool:
        """`path` and `query` from the request target (origin or absolute form); False after
        answering 400 to anything else. An absolute-form target's host replaces the Host header
        (RFC 9112 3.2.2, as nginx does)."""
        url = self.req.url.decode("latin-1")
        if not url.startswith("/"):
            absolute = _origin_form(url)
            if absolute is None:
                self.respond(400, error_body(400))
                return False
            self.req.host, url = absolute
        self.path, _, self.query = url.partition("?")
        return True

    def _route_now(self, method: str, host: str | None, headers: Any) -> Any:
        server = self.server
        port = server.dst[1] if server.dst else (443 if server.scheme == "https" else 80)
        return decide(self.runtime, method, host, self.path, self.query, server.scheme, port=port,
                      headers=headers, sni=server.sni, dst=server.dst)

    def _header(self, name: str) -> str | None:
        low = name.encode("latin-1")
        for k, v in self.req.headers:
            if k.lower() == low:
                return v.decode("latin-1")
        return None

    def _new_context(self, route: Any, service: Any, captures: Any) -> Context:
        req, server = self.req, self.server
        make = Context if _core.compiled is None or new_context is None else new_context  # same Context, in C
        ctx = make(None, server.client_ip, req.method, server.scheme, req.host or "", self.path, self.query,
                   list(req.headers), route, service.entity if service else None, captures, time.time())
        if server.trusted:
            ctx.client_trusted = True
        return ctx

    def _run_access(self) -> None:
        ctx = self.ctx
        if self.body_held:
            ctx.body = b"".join(self.req.buffer)
        pending = run_phase(self.chain, "access", ctx) if "access" in self.chain.phases else None
        if pending is not None:
            self.loop.create_task(pending).add_done_callback(lambda _t: self._after_access())
        else:
            self._after_access()

    def _answered_exit(self, ctx: Context) -> bool:
        """A plugin answered (`ctx.exit`): send its answer; False when none did."""
        ex = ctx.exited
        if ex is None:
            return False
        self.respond(ex.status, ex.body, [*ctx.response_headers, *ex.headers], content_type=None)
        return True

    def _after_access(self) -> None:
        if self.server.closed or self.done:
            return
        ctx = self.ctx
        if ctx.exited is not None:
            self._answered_exit(ctx)
            return
        if ctx.body_limit:
            self.req.body_limit = ctx.body_limit
            if self.req.body_size > ctx.body_limit:
                self.respond(413, error_body(413, "Request size limit exceeded"))
                return
        if self.target.service.scheme in _GRPC_SCHEMES and self._to_grpc():
            return
        self.proceed()

    def _to_grpc(self) -> bool:
        """A gRPC service speaks HTTP/2 only: a whole request (grpc-web, grpc-gateway rewrote it)
        goes there through an HTTP/2 leg, with this exchange as its client side."""
        from .http2._h1bridge import H1Bridge, bridgeable  # the HTTP/2 stack, on first use

        if not bridgeable(self):
            return False
        H1Bridge(self).start()
        return True

    # -- upstream ---------------------------------------------------------------------------
    def proceed(self) -> None:
        service = self.target.service
        ctx = self.ctx
        if ctx is None:  # a service without an upstream has its one peer (`_Fixed.select`, inlined)
            tried = self.tried
            peer = service.balancer.peer if service.fixed and not tried else service.balancer.select(None, exclude=tried)
        else:  # plugins see the tries (Kong's balancer_data.tries), and may hash on the request
            peer = _tries.pick(ctx, service, self.tried)
        if peer is None:
            if self.last_error is not None:
                self.respond(*self._error(*self.last_error))
            else:
                self.respond(503, error_body(503, NO_PEER))
            return
        self.peer = peer
        self.tries += 1
        host, port = peer.host, peer.port
        if self.runtime.origins:  # the node's `origins` override where this peer's traffic goes
            self.origin = origin_of(self.runtime, service, peer)
            host, port = self._dial_address()
        if self.runtime.mesh_dials and self._mesh_hop(host, port):
            # a zone hop's connection is for one service (its SNI): never reused for another
            key = (host, port, "mesh") if self.zone_hop is None else (host, port, "mesh", self.zone_hop.sni)
        elif self.origin is not None:
            key = self.origin
        else:
            key = service.fixed_key or (host, port, service.pool_key)
        conn = self.worker.pool.take(key, self.t0)
        if conn is not None:
            self.send(conn)
        else:
            self._spawn_connect(peer, key)

    def _mesh_hop(self, host: str, port: int) -> bool:
        """Whether this try's hop is mesh mutual TLS (only asked where the mesh is on); a hop to
        another zone (meshway.zones: through mesh gateways, by SNI) always is."""
        mesh = self.runtime.mesh
        self.zone_hop = mesh.zone_hops.get(self.target.service.entity.get("name")) if mesh.zone_hops else None
        self.mesh_hop = hop = self.zone_hop is not None or mesh.upgrades(host, port)
        return hop

    def _spawn_connect(self, peer: Any, key: tuple) -> None:
        self.loop.create_task(self._connect(peer, key)).add_done_callback(self._connect_ended)

    def _connect_ended(self, task: asyncio.Task) -> None:
        """A bug in the connect path must answer the client, not strand the exchange."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("proxy error for %s %s: %r", self.req.method, self.path, exc, exc_info=exc)
        if self.response_started:
            self.abort_all()
        else:
            self.detach_upstream()
            self.respond(502, error_body(502))

    def _dial_address(self) -> tuple[str, int]:
        origin = self.origin
        return (origin[1], origin[2]) if origin is not None else (self.peer.host, self.peer.port)

    def _dial_tls(self, peer: Any) -> tuple[Any, str | None]:
        """The client TLS context and SNI for this try's hop (None, None: plain)."""
        if self.mesh_hop:  # the service's own TLS, if any, is the receiving sidecar's to re-originate
            return self.runtime.mesh.client_ctx, MESH_SNI if self.zone_hop is None else self.zone_hop.sni
        service, origin = self.target.service, self.origin
        tls = service.ssl if origin is None else origin_context(self.runtime, service, origin)
        return tls, upstream_host(self.target, peer, self.req.host).rsplit(":", 1)[0] if tls else None

    async def _connect(self, peer: Any, key: tuple) -> None:
        service = self.target.service
        tls, sni = self._dial_tls(peer)
        host, port = self._dial_address()
        try:
            conn = await self.worker.pool.connect(key, host, port, service.connect_timeout, ssl=tls,
                                                  server_hostname=sni,
                                                  source=self.runtime.mesh.source_for(host, port))
        except asyncio.TimeoutError:
            self._connect_failed(peer, 504, "timeout", timeout=True)
            return
        except (OSError, ssl.SSLError) as e:
            self._connect_failed(peer, *connect_failure(e), tcp_failure=True)
            return
        if self.ctx is not None:
            _tries.connected(self.ctx)
        if self.mesh_hop and not _mesh_peer_verified(conn):
            conn.close()
            self._connect_failed(peer, 502, "the sidecar is not a mesh node", tcp_failure=True)
            return
        if self.zone_hop is not None and not self.zone_hop.answered_by(_peer_der(conn)):
            conn.close()  # the gateways in between cannot answer: the target's own sidecar must
            self._connect_failed(peer, 502, f"the peer is not {self.zone_hop.identity} (another zone's hop is "
                                            "verified end to end)", tcp_failure=True)
            return
        if self.done or self.server.closed:
            conn.close()
            return
        self.send(conn)

    def _connect_failed(self, peer: Any, status: int, why: str, **report: Any) -> None:
        log.error("upstream %s:%s for %s %s: %s", peer.host, peer.port, self.req.method, self.path, why)
        self.target.service.balancer.report(peer, **report)
        self.tried = self.tried | {peer}
        self.last_error = (status, why)
        if self.ctx is not None:
            _tries.failed(self.ctx, status, connecting=True)
        if self.done or self.server.closed:
            return
        if self.tries <= self.target.service.retries:
            self.proceed()
        else:
            self.respond(*self._error(status, why))

    def _error(self, status: int, why: str) -> tuple[int, bytes]:
        return status, failure_body(status, why)

    def send(self, conn: Any) -> None:
        """Bind `conn` to this exchange and write the request head with any body held so far."""
        req, ctx, target = self.req, self.ctx, self.target
        self.conn = conn
        self.mesh_peer = conn.mesh_peer
        if target.service.tracked:
            target.service.balancer.on_connect(self.peer)
        kept, wire, server, last = req.kept, self.decision.wire, self.server, target.last_host
        if ctx is None and kept is not None and wire is not None and not req.expect and not server.trusted \
                and last[0] is self.peer and not target.preserve_host:
            # `_encode_head` of a request without plugins whose header lines the compiled parser
            # encoded, with its decision's path and its peer's Host cached, inlined (keep both in step)
            length = req.content_length
            head = _core.compiled.request_head(
                req.method, wire[0] + b"?" + self.query.encode("latin-1") if self.query else wire[0], last[1],
                kept[0], kept[1], server.ip_b, wire[1], server.fwd_fixed, self.worker.via,
                -2 if req.chunked else -1 if length is None else length)
            if head is None:  # a method not in ASCII
                head = self._encode_head(conn)
        else:
            head = self._encode_head(conn)
        if not req.buffer and not req.chunked and (ctx is None or not ctx.body_replaced):
            # The common case (nothing of the body buffered yet, none set by a plugin): the head
            # alone, no list to build and join; a body that follows is relayed by client_body().
            self.req_sent = req.complete
        else:
            head = b"".join(self._with_body(head))
        self.t_sent = now = self.loop.time()
        if conn.relay is not None and (ctx is None or self.chain.head_free) and not req.upgrade \
                and req.method != "HEAD":
            # The compiled parser encodes the response head and frames the body for the client
            # and calls `_complete` at the end (`_h1parse.ResponseParser.relay`): no Python per
            # parser event. A response it cannot take comes to `on_up_headers` as without it.
            # Plugins without response/body phases: the headers they set before (rate-limiting's)
            # are applied there, and the Context gets the head for their log phase.
            worker = self.worker
            conn.relay(self, self.out, self.t0, now, req.keep_alive, req.version == "1.1", worker.via,
                       worker.latency_tokens,
                       None if ctx is None or (self.chain.response_free and not ctx.response_headers) else ctx)
        # The read timeout is armed with the write once the whole request went (one clock read
        # for both). bind may deliver a whole early answer (server speaks first): see _upstream.
        if conn.early or conn.early_eof or conn.closed or not self.req_sent:
            conn.bind(self, head, target.service.read_timeout if self.req_sent else 0.0, now)
        else:  # `conn.bind` of a whole request on an open connection, inlined: this runs per request
            conn.exchange = self
            conn.requests += 1
            conn.transport.write(head)
            conn.timeout = timeout = target.service.read_timeout
            conn.deadline = now + timeout
            if conn.timer is None:
                conn.timer = self.loop.call_at(conn.deadline, conn._check)
        if req.expect and not req.complete and not self.continue_sent and not self.done:
            self.continue_sent = True
            self.server.transport.write(_CONTINUE)
            self.head_bytes += len(_CONTINUE)
        if self.server.paused:
            self.server.resume("buffer")

    def _with_body(self, head: bytes) -> list[bytes]:
        """The request head, then the body held so far (and its end, when complete)."""
        req, ctx = self.req, self.ctx
        data = [head]
        if ctx is not None and ctx.body_replaced:
            data.append(ctx.body or b"")
            req.buffer.clear()
            self.req_sent = True
            return data
        for chunk in req.buffer:
            data.append(b"%x\r\n%s\r\n" % (len(chunk), chunk) if req.chunked else chunk)
        req.buffer.clear()
        req.buffered = 0
        if req.complete:
            if req.chunked:
                data.append(b"0\r\n\r\n")
            self.req_sent = True
        return data

    def _encode_head(self, conn: Any) -> bytes:  # (`send` does the plainest case inline)
        req, ctx, server = self.req, self.ctx, self.server
        headers = ctx.headers if ctx is not None else req.headers
        if req.expect:
            headers = [h for h in headers if h[0].lower() != b"expect"]
        wire = self.decision.wire
        if wire is None:  # per routing decision (same method, host, path): computed once
            fwd = self._forwarded()
            path = upstream_target(self.target, self.match, "")
            wire = self.decision.wire = (path, forwarded_dynamic(fwd))
        if ctx is not None:
            method = ctx.method
            if ctx.upstream_path is None and ctx.upstream_query is None:  # as routed: the decision's path
                path = wire[0] + b"?" + self.query.encode("latin-1") if self.query else wire[0]
            else:
                path = upstream_target(self.target, self.match, self.query, ctx.upstream_path, ctx.upstream_query)
            ctx.upstream_uri = path.decode("latin-1")
        else:
            method = req.method
            path = wire[0] + b"?" + self.query.encode("latin-1") if self.query else wire[0]
        target = self.target
        last = target.last_host  # `_upstream_host`'s first test, inlined: this runs per request
        host = last[1] if last[0] is self.peer and not target.preserve_host else self._upstream_host()
        if ctx is not None and ctx.body_replaced:
            length = len(ctx.body or b"")
        elif req.chunked:
            length = -2
        elif req.content_length is not None:
            length = req.content_length
        else:
            length = -1
        lines = None
        if server.trusted:
            pass
        else:
            core = _core.compiled
            if ctx is None and not req.expect:
                encoded = req.kept  # the parser's encoding (_core), or None
            else:  # a plugin's or the Expect-less headers: encoded in C too when compiled
                encoded = core.encode_request_headers(headers) if core is not None and not req.upgrade else None
            if encoded is not None:  # the whole head in one C buffer (None: a method not in ASCII)
                kept, xff = encoded
                head = core.request_head(method, path, host, kept, xff, server.ip_b, wire[1], server.fwd_fixed,
                                         self.worker.via, length) if core is not None else None
                if head is not None:
                    return head
                ip, via = server.ip_b, self.worker.via
                lines = b"".join((b"Host: ", host, b"\r\n", kept, b"X-Forwarded-For: ", xff + b", " + ip if xff else ip,
                                  b"\r\n", wire[1], server.fwd_fixed, b"" if via is None else _via_line(via)))
            else:
                lines = encode_request_headers(headers, host, server.ip_b, server.fwd_fixed, wire[1],
                                               via=self.worker.via, tunnel=req.upgrade)
        if lines is None:
            kept = upstream_request_headers(headers, host, self._forwarded(), via=self.worker.via, tunnel=req.upgrade)
            lines = b"".join(n + b": " + v + b"\r\n" for n, v in kept)
        if length >= 0:
            framing = b"Content-Length: %d\r\n\r\n" % length
        elif length == -2:
            framing = b"Transfer-Encoding: chunked\r\n\r\n"
        else:
            framing = b"\r\n"
        return b"".join((method.encode("latin-1"), b" ", path, b" HTTP/1.1\r\n", lines, framing))

    def _forwarded(self) -> Forwarded:
        server, target, match = self.server, self.target, self.match
        rhost = self.req.host or ""
        client_host = rhost.rsplit(":", 1)[0] if ":" in rhost and not rhost.endswith("]") else rhost
        return Forwarded(server.client_ip, server.scheme, client_host, server.listen_port, escape_path(self.path),
                         escape_path(match.matched_path) if target.strip_path and match.entry.prefix else None,
                         server.trusted)

    def _upstream_host(self) -> bytes:
        target, peer = self.target, self.peer
        if target.preserve_host and self.req.host:
            return self.req.host.encode("latin-1")
        last = target.last_host  # (peer, Host): most services have one peer; an identity test
        if last[0] is peer:      # is cheaper than hashing the Peer dataclass (Python __hash__)
            return last[1]
        cache = target.host_cache
        host = cache.get(peer)
        if host is None:
            host = cache[peer] = upstream_host(target, peer, None).encode("latin-1")
        target.last_host = (peer, host)
        return host

    # -- client body --------------------------------------------------------------------------
    def client_body(self, body: bytes) -> None:
        conn = self.conn
        if conn is not None and not self.body_held:
            conn.write(b"%x\r\n%s\r\n" % (len(body), body) if self.req.chunked else body)
            return
        req = self.req
        req.buffer.append(body)
        req.buffered += len(body)
        if req.buffered > _BUFFER_LIMIT and not self.body_held:
            self.server.pause("buffer")

    def client_body_done(self) -> None:
        self.server.deadline_kind = None  # no body timeout any more (set_deadline(None), without the call)
        if self.body_held:
            self._run_access()
            return
        conn = self.conn
        if conn is not None and not self.req_sent and not conn.closed:
            if self.req.chunked:
                conn.write(b"0\r\n\r\n")
            self.req_sent = True
            conn.arm(self.target.service.read_timeout)

    # -- endings ------------------------------------------------------------------------------
    def respond(self, status: int, body: bytes, headers: list | None = None, content_type: bytes | None = b"") -> None:
        """Answer from the proxy itself (errors, redirects, plugin exits)."""
        if self.done or self.server.closed:
            return
        self.status = status
        req = self.req
        # A body still to come is read and dropped (discard_limit), unless the client waits for a
        # 100 Continue it never got: it may then send the body or not, so only a close is clear.
        keep = req.keep_alive and not req.upgrade and (
            req.read_whole() or (discard_limit(req) > 0 and not (req.expect and not self.continue_sent)))
        kw = {} if content_type == b"" else {"content_type": content_type}
        if self.ctx is not None:
            self.ctx.response_status = status
            self.ctx.response_source = "kong" if self.ctx.exited is None else "exit"
        data = render_response(status, body, headers, keep_alive=keep, head=self.req.method == "HEAD", **kw)
        self.server.transport.write(data)
        self.sent_bytes = len(body)
        self.head_bytes += len(data) - len(body)  # the whole answer, whether HEAD left the body out or not
        self.finish(keep)

    def finish(self, keep: bool | None = None, now: float | None = None) -> None:
        if self.done:
            return
        self.done = True
        self.flush()
        req = self.req
        req.exchange = None  # no reference cycle: the request dies by refcount, not by the GC
        if keep is None:
            keep = req.keep_alive and (req.complete or (not req.chunked and not req.content_length)) \
                and not self.resp_close and not req.upgrade  # read_whole(), inlined
        if now is None:
            now = self.loop.time()
        self.worker.access.h1_line(self, now)
        ctx = self.ctx
        if ctx is not None and "log" in self.chain.phases:
            ctx.latencies = {"request": int((now - self.t0) * 1000),
                             "proxy": int((self.t_headers - self.t_sent) * 1000) if self.t_headers else -1,
                             "kong": int((self.t_sent - self.t0) * 1000) if self.t_sent else int((now - self.t0) * 1000)}
            # Kong's request.size and response.size: nginx's $request_length and $bytes_sent
            ctx.request_size = request_head_size(req) + req.body_size
            ctx.response_size = self.head_bytes + self.sent_bytes
            pending = start_log(self.chain, ctx)
            if pending is not None:  # a log phase waits for I/O: it finishes in a Task
                self.loop.create_task(pending)
        self.server.exchange_done(self, keep, now)

    def _fail_after_head(self) -> None:
        self.flush()
        self.done = True
        self.worker.access.line(self)
        if not self.server.closed:
            self.server.transport.abort()
            self.server.closed = True

    def upstream_failed(self, conn: Any, kind: str, why: str) -> None:
        if self.done or conn is not self.conn:
            return
        log.error("upstream %s:%s for %s %s: %s", self.peer.host, self.peer.port, self.req.method, self.path, why)
        self.target.service.balancer.report(self.peer, timeout=kind == "timeout", status=None if kind == "timeout" else 502)
        self.conn = None
        self.target.service.balancer.on_release(self.peer)
        if self.response_started:
            self._fail_after_head()
        else:
            status = 504 if kind == "timeout" else 502
            if self.ctx is not None:
                _tries.failed(self.ctx, status)
            self.respond(status, error_body(status))

    def upstream_lost(self, conn: Any, exc: Exception | None) -> None:
        if self.done or conn is not self.conn:
            return
        if self.response_started:
            if self.resp_close or (self.resp_chunked and not _has_length(self.up_headers) and not _is_chunked(self.up_headers)):
                if self.resp_chunked:
                    self.out.append(b"0\r\n\r\n")
                self._release(conn, reusable=False)
                self.finish()
            else:
                self.target.service.balancer.on_release(self.peer)
                self.conn = None
                self._fail_after_head()
            return
        self.conn = None
        self.target.service.balancer.on_release(self.peer)
        if conn.reused and not conn.got_bytes and self._resendable():
            self._spawn_connect(self.peer, conn.key)  # stale pooled connection
            return
        log.error("upstream %s:%s closed the connection before answering %s %s", self.peer.host, self.peer.port,
                  self.req.method, self.path)
        self.target.service.balancer.report(self.peer, tcp_failure=True)
        if self.ctx is not None:
            _tries.failed(self.ctx, 502)
        self.respond(502, error_body(502))

    def _resendable(self) -> bool:
        req = self.req
        return (not req.chunked and not req.content_length) or (self.ctx is not None and self.ctx.body_replaced)

    def detach_upstream(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.exchange = None
            conn.abort()

    def abort_all(self) -> None:
        self.detach_upstream()
        self._fail_after_head()

    def client_lost(self) -> None:
        if not self.done:
            self.done = True
            log.info("client %s closed the connection during %s %s", self.server.client_ip, self.req.method, self.path)
            self.status = self.status or 499
            self.worker.access.line(self)
        if self.conn is not None and self.target is not None:
            self.target.service.balancer.on_release(self.peer)
        self.detach_upstream()

def _origin_form(url: str) -> tuple[str, str] | None:
    """`http://host/path?q` (absolute form) -> (`host`, `/path?q`); None for anything else
    (another scheme, userinfo, no host)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    host, target = rest[:end], rest[end:]
    if not host or "@" in host:
        return None
    return host, target if target.startswith("/") else "/" + target


def _peer_der(conn: Any) -> bytes | None:
    sslobj = conn.transport.get_extra_info("ssl_object")
    return sslobj.getpeercert(binary_form=True) if sslobj else None


def _mesh_peer_verified(conn: Any) -> bool:
    """After dialling another sidecar: it must be a mesh node that spoke the mesh ALPN."""
    sslobj = conn.transport.get_extra_info("ssl_object")
    conn.mesh_peer = peer_spiffe_id(sslobj.getpeercert(binary_form=True)) if sslobj else None
    return conn.mesh_peer is not None and sslobj.selected_alpn_protocol() == MESH_ALPN
