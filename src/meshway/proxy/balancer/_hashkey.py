"""Hash keys for consistent hashing: `hash_on` / `hash_fallback`, compiled once per upstream.

Kong's rules: take the `hash_on` value; when the request has none, take the `hash_fallback`
value; with neither the balancer falls back to weighted round-robin. A `cookie` source always
gives a key: when the cookie is absent a new uuid is made, kept in `request.shared` (so a retry
hashes to the same place) and offered to the proxy as a ready `Set-Cookie` value under
`request.shared["balancer_set_cookie"]`.
"""
from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qs

KeyFn = Callable[[Any], "str | None"]

SET_COOKIE = "balancer_set_cookie"   # shared key: the Set-Cookie value the proxy must send
HASH_COOKIE = "balancer_hash_cookie"  # shared key: the generated cookie value, for retries


def _consumer(request: Any) -> str | None:
    for entity in (request.consumer, request.credential):
        if entity and entity.get("id"):
            return str(entity["id"])
    return None


def _client_ip(request: Any) -> str | None:
    return request.client_ip or None


def _path(request: Any) -> str | None:
    return request.path or None


def _header(name: str) -> KeyFn:
    return lambda request: request.get_header(name) or None


def _query_arg(name: str) -> KeyFn:
    def key(request: Any) -> str | None:
        values = parse_qs(request.query or "").get(name)
        return ",".join(sorted(values)) if values else None
    return key


def _uri_capture(name: str) -> KeyFn:
    return lambda request: (request.uri_captures or {}).get(name) or None


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie `name` in a Cookie header, or None."""
    for part in (header or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value or None
    return None


def _cookie(name: str, path: str) -> KeyFn:
    from uuid import uuid4  # at config time, for upstreams hashed on a cookie only

    def key(request: Any) -> str:
        found = cookie_value(request.get_header("cookie"), name)
        if found is not None:
            return found
        shared = request.shared
        if HASH_COOKIE not in shared:
            shared[HASH_COOKIE] = value = str(uuid4())
            shared[SET_COOKIE] = f"{name}={value}; Path={path}"
        return shared[HASH_COOKIE]
    return key


def _source(upstream: dict[str, Any], kind: str, prefix: str) -> KeyFn | None:
    simple = {"consumer": _consumer, "ip": _client_ip, "path": _path}
    if kind in simple:
        return simple[kind]
    if kind == "header":
        return _header(upstream[f"{prefix}_header"].lower())
    if kind == "query_arg":
        return _query_arg(upstream[f"{prefix}_query_arg"])
    if kind == "uri_capture":
        return _uri_capture(upstream[f"{prefix}_uri_capture"])
    if kind == "cookie":
        return _cookie(upstream["hash_on_cookie"], upstream.get("hash_on_cookie_path") or "/")
    return None  # "none" or unknown


def compile_key(upstream: dict[str, Any]) -> KeyFn | None:
    """The request -> key function for an upstream, or None when it does not hash."""
    if upstream.get("algorithm") != "consistent-hashing":
        return None
    first = _source(upstream, upstream.get("hash_on") or "none", "hash_on")
    if first is None:
        return None
    second = _source(upstream, upstream.get("hash_fallback") or "none", "hash_fallback")
    if second is None:
        return first
    return lambda request: first(request) or second(request)
