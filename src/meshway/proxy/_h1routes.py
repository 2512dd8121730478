"""The HTTP/1.1 codec's routing cache: answers of `decide()` by (method, Host, raw target).

Rules:
- Only for routers that never look at headers (no route has `headers`): then a routing answer
  is a function of the request line, the Host and the listener (scheme, original destination,
  SNI), which make the key; redirects (which depend on the query) are never kept, nor answers
  to absolute-form targets (their host replaces the Host header: `Exchange._split_target`).
- It lives on the runtime: a new config starts with an empty cache; sizes are bounded (request
  targets and original destinations are client-controlled).

Why: a keep-alive client tends to repeat its requests; a hit saves decoding and splitting the
target and the general `decide()` lookup (~1 us of Python per request).
"""
from __future__ import annotations

from typing import Any

__all__ = ["listener_routes", "remember"]

_ROUTES_CACHED = 4096  # answers kept per listener and runtime
_ROUTE_LISTENERS = 64  # (scheme, original destination, SNI) combinations with a cache


def listener_routes(server: Any, runtime: Any) -> dict | None:
    """The cache for `server`'s listener under `runtime`, or None when the router needs headers."""
    if server.routes_of is runtime:
        return server.routes
    routes = None
    if not runtime.router.needs_headers:
        listener = (server.scheme, server.dst, server.sni)
        routes = runtime.h1_routes.get(listener)
        if routes is None:
            if len(runtime.h1_routes) >= _ROUTE_LISTENERS:  # dst varies on transparent listeners
                runtime.h1_routes.clear()
            routes = runtime.h1_routes[listener] = {}
    server.routes_of, server.routes = runtime, routes
    return routes


def remember(routes: dict | None, key: tuple, decision: Any, path: str, query: str) -> None:
    """Keep a routing answer unless it must not be reused (a redirect depends on the query)."""
    if routes is None or decision.headers is not None:
        return
    if len(routes) >= _ROUTES_CACHED:
        routes.clear()
    routes[key] = (decision, path, query)
