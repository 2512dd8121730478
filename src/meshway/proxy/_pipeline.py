"""The protocol-independent request pipeline: route, redirect, upstream path and Host.

Codecs (HTTP/1.1 here, HTTP/2 next door) call these with plain values and get plain values
back; nothing here touches a socket. Order of a request:
[global `rewrite` plugins, then `rewritten()`] -> `decide()` (router, https redirect, service)
-> `enter_chain()` when the route has plugins (the codec drives `_engine`)
-> `upstream_target()` + `upstream_host()` -> balancer -> pool.

Rewrite (Kong): only when the config has global rewrite plugins. The codec builds the Context
before routing, runs them, and routes on the method, Host header, path and query they left; a
path or query they set becomes the request's own, so the matched route's `strip_path` applies
to it. A rewritten request bypasses the codec's request-line cache (`decide()`'s own cache is
keyed by the values routed on, so it stays right).
"""
from __future__ import annotations

from typing import Any, Callable

from ._errors import NO_ROUTE, error_body
from ._paths import escape_path, escape_query, from_text, normalize_path, upstream_path
from ._plugins import HANDSHAKE
from ._router import RouteMatch, valid_host
from ._runtime import RouteTarget, Runtime
from ._websocket import handshake_error

__all__ = ["Decision", "decide", "enter_chain", "rewritten", "upstream_target", "upstream_host", "NO_SERVICE"]

NO_SERVICE = "no Service found with those values"
_DEFAULT_PORT = {"http": 80, "https": 443}
_CACHE_SIZE = 4096


class Decision:
    """Where a request goes: a route and match, or an answer the proxy gives itself."""

    __slots__ = ("target", "match", "status", "body", "headers", "wire")

    def __init__(self, target: RouteTarget | None, match: RouteMatch | None, status: int = 0, body: bytes = b"",
                 headers: list | None = None):
        self.target = target
        self.match = match
        self.status = status
        self.body = body
        self.headers = headers
        self.wire: tuple[bytes, bytes] | None = None  # codec's cache: upstream path, forwarded lines


def decide(runtime: Runtime, method: str, host: str | None, path: str, query: str, scheme: str, *,
           port: int, headers: Callable[[str], str | None] | None = None, sni: str | None = None,
           dst: tuple[str, int] | None = None) -> Decision:
    """Route a request; a Decision with `status` set is an answer to send as is."""
    cacheable = headers is None or not runtime.router.needs_headers
    if cacheable:
        key = (method, host, path, scheme, port, sni, dst)
        found = runtime.decisions.get(key)
        if found is not None:
            return found
    d = _decide(runtime, method, host, path, query, scheme, port, headers, sni, dst)
    if cacheable and d.headers is None:  # redirects depend on the query: not cached
        cache = runtime.decisions
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[key] = d
    return d


def rewritten(ctx: Any, method: str, host: str | None, path: str, query: str) -> tuple | None:
    """After the rewrite phase: the (method, host, path, query) to route on, or None when the
    plugins changed none of them. The Context takes the new values as the request's."""
    new_path = path if ctx.upstream_path is None else from_text(ctx.upstream_path)
    new_query = query if ctx.upstream_query is None else ctx.upstream_query
    new_host = ctx.get_header("host")
    if new_path == path and new_query == query and new_host == host and ctx.method == method:
        return None
    ctx.path, ctx.query, ctx.host = new_path, new_query, new_host or ""
    ctx.upstream_path = ctx.upstream_query = None
    return ctx.method, new_host, new_path, new_query


def _attach_route(ctx: Any, target: RouteTarget, match: RouteMatch) -> None:
    """Fill in what routing found on a Context built before it (for the rewrite phase)."""
    ctx.route = target.route
    ctx.service = target.service.entity if target.service else None
    ctx.uri_captures = match.captures


def enter_chain(ex: Any, d: Decision, body_complete: bool) -> None:
    """A routed exchange (HTTP/1.1 Exchange or HTTP/2 Stream) that has plugins to run, or a
    Context from the rewrite phase: give it the route's chain and a Context that knows the
    route, then hold the body for a chain that reads it whole, else run the access phase."""
    chain = ex.chain = d.target.chain
    if ex.ctx is None:
        ex.ctx = ex._new_context(d.target.route, d.target.service, d.match.captures)
    else:
        _attach_route(ex.ctx, d.target, d.match)
    if HANDSHAKE in chain.phases:  # a ws/wss route: WebSocket handshakes only (Kong Enterprise)
        why = handshake_error(ex.ctx.method, ex.ctx.get_header)
        if why is not None:
            ex.respond(400, error_body(400, f"Cannot complete WebSocket handshake: {why}"))
            return
    if chain.buffers_request and not body_complete:
        ex.body_held = True
        return
    ex._run_access()


def _decide(runtime: Runtime, method: str, host: str | None, path: str, query: str, scheme: str, port: int,
            headers: Any, sni: str | None, dst: Any) -> Decision:
    if not valid_host(host):  # as nginx: 400 "client sent invalid host header"
        return Decision(None, None, 400, error_body(400, "Bad request"))
    norm = normalize_path(path)
    match = runtime.router.match(method, host, norm, default_port=port, headers=headers, sni=sni, dst=dst)
    if match is None:
        return Decision(None, None, 404, error_body(404, NO_ROUTE))
    target: RouteTarget = match.entry.data
    if not _takes(target, scheme):  # rare: prefer an equally good route that takes this scheme
        accept = _takes_http if scheme == "http" else _takes_https
        other = runtime.router.match(method, host, norm, default_port=port, headers=headers, sni=sni, dst=dst,
                                     accept=accept)
        if other is not None:
            match, target = other, other.entry.data
        elif scheme == "http":
            return _https_redirect(target, match, host, path, query)
    if target.service is None:
        return Decision(target, match, 503, error_body(503, NO_SERVICE))
    return Decision(target, match)


def _takes_http(target: RouteTarget) -> bool:
    return target.http_ok


def _takes_https(target: RouteTarget) -> bool:
    return bool({"https", "grpcs", "wss"} & set(target.route.get("protocols") or ("https",)))


def _takes(target: RouteTarget, scheme: str) -> bool:
    if scheme == "http":
        return target.http_ok
    return scheme != "https" or _takes_https(target)


def _https_redirect(target: RouteTarget, match: RouteMatch, host: str | None, path: str, query: str) -> Decision:
    status = target.redirect_status
    if status == 426:
        return Decision(target, match, 426, error_body(426))
    name = (host or "").rsplit(":", 1)[0] if host and not host.endswith("]") else (host or "")
    location = f"https://{name}{escape_path(path)}" + (f"?{escape_query(query)}" if query else "")
    return Decision(target, match, status, b"", [(b"Location", location.encode("latin-1"))])


def upstream_target(target: RouteTarget, match: RouteMatch, query: str,
                    override_path: str | None = None, override_query: str | None = None) -> bytes:
    """The request target (path and query) sent upstream: the normalised path the route matched,
    stripped and joined with the service's path, encoded for a request line (`_paths`); or the
    path a plugin set, encoded the same way. A plugin's query is encoded, the client's is not
    (its parser admitted printable ASCII only)."""
    if override_path is None:
        up = match.upstream
        if up is None:  # once per routing decision: the match is cached with it
            up = match.upstream = _joined(target, match).encode("latin-1")
    else:
        up = escape_path(from_text(override_path)).encode("latin-1")
    if override_query is not None:
        query = escape_query(from_text(override_query))
    return up + b"?" + query.encode("latin-1") if query else up


def _joined(target: RouteTarget, match: RouteMatch) -> str:
    path = match.path
    strip = target.strip_path and match.matched_path is not None
    return escape_path(upstream_path(target.service.path, path, match.postfix if strip else path, strip,
                                     target.path_handling))


def upstream_host(target: RouteTarget, peer: Any, client_host: str | None) -> str:
    """The Host header sent upstream (also the TLS SNI name)."""
    if target.preserve_host and client_host:
        return client_host
    service = target.service
    name = service.host_header or peer.hostname
    if peer.port != _DEFAULT_PORT.get(service.scheme, 0):
        return f"{name}:{peer.port}"
    return name
