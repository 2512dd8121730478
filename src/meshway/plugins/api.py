"""The plugin interface: what a plugin is, and what it may see of a request.

Theory of operation:
- A plugin is a class with a `name`, a `priority` (higher runs first, as in Kong), a pydantic
  `Config` model and optional phase methods. Phase methods may be plain functions or
  coroutines; the engine looks once, when the config is compiled, at which phases a plugin
  defines and whether each is async, so a phase a plugin does not define costs nothing. It
  reads them from the *instance*: `__init__` may set a phase to None (nothing to do with this
  config, e.g. prometheus with every metric off) or to a plain function (nothing to wait for,
  e.g. rate-limiting with the local policy).
- One plugin *instance* exists per plugin entity per compiled config: `__init__` receives the
  validated config and a `ConfigIndex` of the whole snapshot, and is where a plugin builds
  every lookup table it needs (credentials by key, compiled regexes...). Nothing per request
  re-reads config.
- Phases, in order: `certificate` (TLS handshake, HTTPS only), `rewrite` (before routing;
  global plugins only), `access` (may answer: `ctx.exit(...)`), `response` (status and
  headers from the upstream, before they go to the client), `body` (each response chunk; may
  replace it), `log` (after the response; must not raise into the client).
- Stream routes (tcp, tls, tls_passthrough, udp) run, as Kong's stream subsystem, `preread(ctx)`
  (route chosen, upstream not dialled yet; `ctx.exit(status)` closes the connection) and
  `log(ctx)` (after the session ended), for plugins with `stream = True` whose entity's
  `protocols` include the session's protocol; `ctx` is then a stream session (see
  `meshway.proxy.stream._plugins.StreamContext`): `log_fields()` is Kong's stream serializer.
  A plugin's `stream_log(ctx)`, when it defines one, is its log phase on streams instead of `log`.
- `certificate(tls)`, as Kong, runs for global plugins only (whose protocols include https or
  grpcs), in every TLS handshake of an HTTPS listener, inside OpenSSL's SNI callback: it must
  be a plain function (an `async def certificate` is refused when the config is compiled,
  naming the plugin). `tls` is a `TLSHandshake`: `tls.sni` (None without SNI),
  `tls.set_certificate(cert_pem, key_pem)` serves another certificate for this handshake,
  `tls.reject()` fails it. Plugins run by priority; a reject stops them. An exception is
  logged with the plugin's name, its changes are dropped and the handshake goes on with the
  certificate it had (the worker lives on).
- `rewrite(ctx)`, as Kong, runs for global plugins only, on every request, before the router:
  `ctx.route` and `ctx.service` are None there, and the method, path, query and headers it
  leaves (`set_method`, `set_path`, `set_query`, `set_header("Host", ...)`) are what the router
  matches on; a path set there becomes the request's path (the route's `strip_path` applies to
  it). It may answer with `ctx.exit()`. The same `ctx` goes on to `access`, `response` and
  `log`. A rewrite method on a route, service or consumer plugin is never called.
- A phase that answers calls `ctx.exit(status, body, headers)`; the chain stops after that
  plugin, as Pingora's filters say they have answered. An exception in a phase gives the
  client a 500 with a request id, is logged with the plugin's name, and the worker lives on.
- State a plugin shares with the node's other workers (Kong's `ngx.shared` dicts) is a
  `SharedCounters` table from `meshway.plugins.shared_counters(name)`, fetched in `__init__`.
- Plugins see only this module's names, never proxy internals.
"""
from __future__ import annotations

from typing import Any, ClassVar, Hashable, Iterable, Mapping, Protocol, Sequence

from pydantic import BaseModel, ConfigDict

PHASES = ("certificate", "rewrite", "access", "response", "body", "log", "preread")
HTTP_PROTOCOLS = ("grpc", "grpcs", "http", "https")
# Kong's stream subsystem (tcp, tls, tls_passthrough, udp routes): `typedefs.protocols` allows
# these besides the HTTP ones; a plugin whose schema allows them says so in `protocols`.
STREAM_PROTOCOLS = ("tcp", "tls", "tls_passthrough", "udp")
ALL_PROTOCOLS = (*HTTP_PROTOCOLS, *STREAM_PROTOCOLS)
# Kong Enterprise's WebSocket protocols belong to the HTTP subsystem (routes proxy them as HTTP):
# a plugin that allows the HTTP protocols allows them too.
WS_PROTOCOLS = ("ws", "wss")


class PluginConfig(BaseModel):
    """Base for plugin config models: unknown fields are errors, as in Kong's schemas."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigIndex(Protocol):
    """Read-only lookups over the whole snapshot, for plugins building their tables at init."""

    def entities(self, collection: str) -> list[dict[str, Any]]:
        """Every entity of a collection (`consumers`, `keyauth_credentials`, `acls`...)."""

    def consumer(self, consumer_id: str) -> dict[str, Any] | None:
        """The consumer with that id, if any."""


class RequestContext(Protocol):
    """What a plugin sees of one request. Header names are case-insensitive."""

    request_id: str
    client_ip: str
    method: str
    scheme: str
    host: str
    path: str
    query: str
    route: Mapping[str, Any] | None
    service: Mapping[str, Any] | None
    consumer: Mapping[str, Any] | None
    credential: Mapping[str, Any] | None
    authenticated_groups: list[str] | None
    uri_captures: Mapping[str, str]
    shared: dict[str, Any]
    status: int | None
    started_at: float
    http_version: str  # "1.1" or "2.0", as Kong's `ngx.req.http_version()` formatted by its tracing
    client_trusted: bool  # the client's address is in `trusted_ips` (its X-Forwarded-* headers are believed)
    # The balancer's tries so far (Kong's `balancer_data.tries`: balancer_start[_ns], balancer_latency[_ns],
    # ip, port, and state/code once failed); per try, seconds to connect (None: a pooled connection);
    # the last pick's host name. Empty / None before the first try.
    tries: list[dict[str, Any]]
    upstream_connect_time: list[float | None]
    balancer_hostname: str | None

    def get_header(self, name: str) -> str | None: ...

    def get_headers(self) -> list[tuple[str, str]]: ...

    def set_header(self, name: str, value: str) -> None: ...

    def add_header(self, name: str, value: str) -> None: ...

    def remove_header(self, name: str) -> None: ...

    def set_path(self, path: str) -> None: ...

    def set_query(self, query: str) -> None: ...

    def set_method(self, method: str) -> None: ...

    def read_body(self) -> bytes | None:
        """The request body if the engine buffered it for this plugin (`Plugin.buffers_request`)."""

    def set_body(self, body: bytes) -> None: ...

    def authenticate(
        self,
        consumer: Mapping[str, Any] | None,
        credential: Mapping[str, Any] | None,
        identifier: str | None = None,
    ) -> None:
        """Record who the client is; sets `consumer` and `credential` for later plugins and the log.

        Before proxying, the engine sets Kong's upstream headers from it: `X-Consumer-ID`,
        `X-Consumer-Custom-ID`, `X-Consumer-Username` (each only when the consumer has that
        field), and either `X-Credential-Identifier: <identifier or credential["id"]>` or, when
        `credential` is None (an `anonymous` consumer), `X-Anonymous-Consumer: true`; a later
        call replaces an earlier one and removes the headers the earlier one set.
        """

    def limit_request_body(self, max_bytes: int) -> None:
        """Answer 413 `{"message": "Request size limit exceeded"}` if the body grows past max_bytes.

        For bodies without a Content-Length (chunked): the engine counts bytes as they stream.
        """

    def exit(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        """Answer the client now; dicts and lists are sent as JSON, `{"message": ...}` as Kong does."""

    # Response side (valid in `response`, `body`, `log`). A `response` phase may assign
    # `response_status` to send another status than the upstream's (Kong's `ngx.status = ...`).
    response_status: int | None
    # The trailers an HTTP/2 (gRPC) upstream ended its response with, set for the last `body`
    # call (eof) only; that call may replace them, or set None so that none are sent (grpc-web
    # writes them into the body). Never set for HTTP/1.1 upstreams.
    response_trailers: list[tuple[bytes, bytes]] | None

    def get_response_header(self, name: str) -> str | None: ...

    def set_response_header(self, name: str, value: str) -> None: ...

    def set_response_headers(self, headers: Iterable[tuple[str, Any]]) -> None:
        """`set_response_header` for each pair, in one pass (Kong's `kong.response.set_headers`)."""

    def add_response_header(self, name: str, value: str) -> None: ...

    def remove_response_header(self, name: str) -> None: ...

    # Log side (valid in `log`): cheap values, so metrics need not build `log_fields()`.
    # Who produced the response: "upstream" (the service), "exit" (a plugin's `exit`), "kong"
    # (the proxy itself: no route, 502/503/504...); Kong's get_source() says service/exit/error.
    response_source: str | None
    # Milliseconds, as Kong's log serializer: "request" (first byte in to last byte out),
    # "proxy" (upstream: request sent to response headers; -1 or None when no upstream was
    # called), "kong" (time spent in the gateway before the upstream).
    latencies: Mapping[str, float | None]
    request_size: int  # bytes received from the client
    response_size: int  # bytes sent to the client

    def log_fields(self) -> dict[str, Any]:
        """Kong's log serializer shape: request, response, route, service, consumer, latencies..."""


class TLSHandshake(Protocol):
    """What a `certificate` phase sees of one TLS handshake."""

    sni: str | None  # the server name the client asked for; None when it sent none
    # None when not known in the handshake: the proxy's SNI callback does not see the socket.
    client_ip: str | None
    server_port: int | None

    def set_certificate(self, cert_pem: str, key_pem: str) -> None:
        """Serve this certificate (PEM, leaf first, then its chain) and key for this handshake."""

    def reject(self) -> None:
        """Fail the handshake: the client gets a TLS handshake_failure alert."""


class SharedCounters(Protocol):
    """Expiring counters shared by every worker of a node: Kong's `ngx.shared` dict, for counting.

    `meshway.plugins.shared_counters(name)` gives the table `name` (the same one to every
    plugin instance of this process, and node-wide in shared memory). Each worker counts in
    its own region and a read sums them, so `totals` then `add` is not atomic across workers:
    two workers may both take the last slot, as with Kong's local rate limiting. A full table
    counts new keys per worker (logged once), never fails. Outside a node (tests, a standalone
    worker) the table is in-process.
    """

    def key(self, text: str) -> Hashable:
        """The table's key for a string; make it once per request, use it for totals and add."""

    def totals(self, keys: Sequence[Hashable], now: float) -> list[int]:
        """The node-wide count of each key; 0 for a key never counted or past its `expires`."""

    def add(self, keys: Sequence[Hashable], expires: Sequence[int], now: float, amount: int = 1) -> None:
        """Count `amount` (one) for each key; a new entry lives until its `expires` (unix seconds)."""

    def take(self, keys: Sequence[Hashable], limits: Sequence[float], expires: Sequence[int], now: float) -> list[int]:
        """`totals`, then `add` when every count is below its limit, in one call; returns the totals."""


class Plugin:
    """Base class of every plugin; subclasses set name, priority, Config and phase methods."""

    name: ClassVar[str]
    priority: ClassVar[int] = 0
    version: ClassVar[str] = "1.0.0"
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    # What Kong's schema for this plugin allows in an entity's `protocols` (`typedefs.protocols_http`:
    # HTTP_PROTOCOLS; `typedefs.protocols`: ALL_PROTOCOLS), and its default when none is given.
    protocols: ClassVar[tuple[str, ...]] = HTTP_PROTOCOLS
    default_protocols: ClassVar[tuple[str, ...]] = HTTP_PROTOCOLS
    # True when its `preread` / `log` phases understand a stream session (`StreamContext`: no
    # request, a `session`); only those run on tcp/tls/tls_passthrough/udp routes.
    stream: ClassVar[bool] = False
    # True when an instance may not be scoped to a consumer (Kong's `typedefs.no_consumer`:
    # authentication plugins, which run before any consumer is known, and cors).
    no_consumer: ClassVar[bool] = False
    # Dotted config paths whose value may be a `{vault://...}` reference, resolved when a config
    # is compiled (Kong's `referenceable = true`); the plugin's __init__ sees the secret itself.
    referenceable: ClassVar[tuple[str, ...]] = ()
    # True when `access` needs `ctx.read_body()`; the engine then buffers the request body.
    buffers_request: ClassVar[bool] = False
    # True when `body` needs the whole response at once rather than chunk by chunk.
    buffers_response: ClassVar[bool] = False

    def __init__(self, config: PluginConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        self.config = config
        self.entity = entity

    @classmethod
    def allowed_protocols(cls) -> list[str]:
        """What an entity's `protocols` may hold, sorted (Kong's `one_of` in the error message); Kong
        Enterprise's WebSocket protocols wherever the HTTP ones are (they are HTTP-subsystem ones)."""
        ws = WS_PROTOCOLS if {"http", "https"} & set(cls.protocols) else ()
        return sorted({*cls.protocols, *ws})

    @classmethod
    def phases(cls) -> tuple[str, ...]:
        """The phases this plugin defines, computed from its methods."""
        return tuple(p for p in PHASES if callable(getattr(cls, p, None)))


def describe(plugins: Iterable[type[Plugin]]) -> list[dict[str, Any]]:
    """A listing for `GET /` and the docs: name, priority, version, phases."""
    return [
        {"name": p.name, "priority": p.priority, "version": p.version, "phases": list(p.phases())}
        for p in sorted(plugins, key=lambda p: -p.priority)
    ]
