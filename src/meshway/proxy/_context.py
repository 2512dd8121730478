"""`Context`: the `RequestContext` plugins see, built only for requests whose route has plugins.

Request and response headers are kept as the codec's `(bytes, bytes)` pairs so that a request
no plugin touched is forwarded without re-encoding; plugin calls translate at the edge.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from ._errors import encode_body

__all__ = ["Context", "Exit"]


class Exit:
    """An answer a plugin gave with `ctx.exit()`: status, body bytes, headers."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]):
        self.status = status
        self.body = body
        self.headers = headers


def _b(s: str) -> bytes:
    return s.encode("latin-1")


_CONSUMER_HEADERS = frozenset({b"x-consumer-id", b"x-consumer-custom-id", b"x-consumer-username",
                               b"x-credential-identifier", b"x-anonymous-consumer"})


def _without(headers: list[tuple[bytes, bytes]], lows: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    """`headers` without the names in `lows`; the same list when none is there (the usual case:
    plugins set headers the request does not have), so no copy per call."""
    for k, _ in headers:
        if k.lower() in lows:
            return [(k, v) for k, v in headers if k.lower() not in lows]
    return headers


def _without_name(headers: list[tuple[bytes, bytes]], low: bytes) -> list[tuple[bytes, bytes]]:
    """`_without` for one name; lengths are compared first, so most headers cost no `lower()`."""
    n = len(low)
    for k, _ in headers:
        if len(k) == n and k.lower() == low:
            return [(k, v) for k, v in headers if k.lower() != low]
    return headers


class Context:
    """The per-request view of the plugin API (meshway.plugins.RequestContext)."""

    def __init__(self, request_id: str, client_ip: str, method: str, scheme: str, host: str, path: str,
                 query: str, headers: list[tuple[bytes, bytes]], route: Mapping | None, service: Mapping | None,
                 captures: Mapping[str, str], started_at: float):
        self.request_id = request_id
        self.client_ip = client_ip
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path
        self.query = query
        self.headers = headers
        self.route = route
        self.service = service
        self.uri_captures = captures
        self.started_at = started_at
        # Only the mutable fields are set per request; the immutable defaults are the class
        # attributes below (a request pays for the fields it changes, ~0.3 us saved).
        self.shared: dict[str, Any] = {}
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.tries: list[dict[str, Any]] = []
        self.latencies = {"proxy": 0, "kong": 0, "request": 0}

    consumer: Mapping[str, Any] | None = None
    credential: Mapping[str, Any] | None = None
    authenticated_groups: list[str] | None = None
    status: int | None = None
    exited: Exit | None = None
    upstream_path: str | None = None
    upstream_query: str | None = None
    body: bytes | None = None
    body_replaced = False
    body_limit = 0
    response_status: int | None = None
    response_source = "upstream"
    upstream_uri = ""
    request_size = 0
    response_size = 0

    @property
    def consumer_id(self) -> str | None:
        return self.consumer.get("id") if self.consumer else None

    # -- request headers
    def get_header(self, name: str) -> str | None:
        low = _b(name.lower())
        n = len(low)
        for k, v in self.headers:
            if len(k) == n and k.lower() == low:  # lengths first: most names cost no lower()
                return v.decode("latin-1")
        return None

    def get_headers(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.headers]

    def set_header(self, name: str, value: str) -> None:
        hdrs = self.headers = _without_name(self.headers, name.lower().encode("latin-1"))
        hdrs.append((name.encode("latin-1"), str(value).encode("latin-1")))

    def add_header(self, name: str, value: str) -> None:
        self.headers.append((_b(name), _b(str(value))))

    def remove_header(self, name: str) -> None:
        self.headers = _without_name(self.headers, name.lower().encode("latin-1"))

    def set_path(self, path: str) -> None:
        self.upstream_path = path

    def set_query(self, query: str) -> None:
        self.upstream_query = query

    def set_method(self, method: str) -> None:
        self.method = method.upper()

    def read_body(self) -> bytes | None:
        return self.body

    def set_body(self, body: bytes) -> None:
        self.body = body
        self.body_replaced = True

    def authenticate(self, consumer: Mapping[str, Any] | None, credential: Mapping[str, Any] | None,
                     identifier: str | None = None) -> None:
        self.consumer = consumer
        self.credential = credential
        self.headers = _without(self.headers, _CONSUMER_HEADERS)
        if consumer:
            for name, field in (("X-Consumer-ID", "id"), ("X-Consumer-Custom-ID", "custom_id"),
                                ("X-Consumer-Username", "username")):
                if consumer.get(field) is not None:
                    self.add_header(name, consumer[field])
        if credential:
            # Kong sends the credential's id unless the plugin names another identifier:
            # never the secret itself (an API key must not leak upstream).
            ident = identifier if identifier is not None else credential.get("id")
            if ident is not None:
                self.add_header("X-Credential-Identifier", str(ident))
        else:
            self.add_header("X-Anonymous-Consumer", "true")

    def limit_request_body(self, max_bytes: int) -> None:
        self.body_limit = max_bytes

    def exit(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        raw, ctype = encode_body(body)
        hdrs = [(_b(k), _b(str(v))) for k, v in (headers or {}).items()]
        if ctype and not any(k.lower() == b"content-type" for k, _ in hdrs):
            hdrs.append((b"Content-Type", ctype))
        self.exited = Exit(status, raw, hdrs)
        self.status = status
        self.response_source = "exit"

    # -- response side
    def get_response_header(self, name: str) -> str | None:
        low = _b(name.lower())
        n = len(low)
        for k, v in self.response_headers:
            if len(k) == n and k.lower() == low:
                return v.decode("latin-1")
        return None

    def set_response_header(self, name: str, value: str) -> None:
        hdrs = self.response_headers = _without_name(self.response_headers, name.lower().encode("latin-1"))
        hdrs.append((name.encode("latin-1"), str(value).encode("latin-1")))

    def add_response_header(self, name: str, value: str) -> None:
        self.response_headers.append((_b(name), _b(str(value))))

    def remove_response_header(self, name: str) -> None:
        self.response_headers = _without_name(self.response_headers, name.lower().encode("latin-1"))

    def log_fields(self) -> dict[str, Any]:
        """Kong's log-serializer shape."""
        query = dict(p.partition("=")[::2] for p in self.query.split("&") if p) if self.query else {}
        url_q = f"?{self.query}" if self.query else ""
        return {
            "request": {"uri": self.path + url_q, "url": f"{self.scheme}://{self.host}{self.path}{url_q}",
                        "querystring": query, "method": self.method, "size": self.request_size,
                        "headers": {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.headers}},
            "upstream_uri": self.upstream_uri,
            "response": {"status": self.response_status or self.status, "size": self.response_size,
                         "headers": {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.response_headers}},
            "tries": self.tries,
            "route": dict(self.route) if self.route else None,
            "service": dict(self.service) if self.service else None,
            "consumer": dict(self.consumer) if self.consumer else None,
            "authenticated_entity": {"id": self.credential.get("id")} if self.credential else None,
            "latencies": dict(self.latencies),
            "client_ip": self.client_ip,
            "started_at": int(self.started_at * 1000),
            "source": self.response_source,
        }


def wall_ms() -> int:
    return int(time.time() * 1000)
