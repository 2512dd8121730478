"""proxy-cache: answers repeated requests from a node-wide cache of upstream responses (Kong's rules).

- `access`: a request whose method is not in `request_method` (or, with `cache_control`, that says
  `no-store` / `no-cache`) is `Bypass`. Otherwise its key is Kong's: sha256 of
  `prefix|method|uri|params|headers` (prefix `consumer:route`, `route` or `default`; uri Kong's
  `ngx.var.request` up to a `?`; params the query args, all or `vary_query_params`, sorted;
  headers the `vary_headers`). A live, fresh entry is answered from the cache (`Hit`, with `Age`);
  one too old for `cache_ttl` (or for the client's max-age/max-stale/min-fresh when
  `cache_control` is on) goes upstream as `Refresh`; none goes upstream as `Miss` (or 504 for
  `only-if-cached`).
- `response`: an upstream answer is kept when its status is in `response_code`, its Content-Type
  matches `content_type` (type, subtype, parameters) and, with `cache_control`, it is not
  private/no-store/no-cache and has a positive max-age/s-maxage/Expires; else `Bypass`.
- `body`: the chunks are collected and stored whole at the end, for `storage_ttl` (or the
  resource's TTL with `cache_control`, or `cache_ttl`).
- `X-Cache-Status`, `X-Cache-Key` and `Age` are sent when `response_headers` says so, or always
  when the request has a `Kong-Debug` header.

The store is the node's memory strategy (`_cache_store`): one per dictionary, shared by every
worker, bounded by the dictionary's size.
"""
from __future__ import annotations

import email.utils
import hashlib
import math
import time
from typing import Any, Literal, Mapping
from urllib.parse import unquote_plus

from pydantic import Field, field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS
from meshway.plugins._shm import shared_directory
from meshway.plugins.bundled._cache_store import cache_store

CACHE_VERSION = 1
MB = 1 << 20
# The shared dicts of Kong's nginx template and their sizes (kong_db_cache: mem_cache_size's default).
DICTIONARIES = {
    "kong": 5 * MB, "kong_locks": 8 * MB, "kong_healthchecks": 5 * MB, "kong_cluster_events": 5 * MB,
    "kong_rate_limiting_counters": 12 * MB, "kong_core_db_cache": 128 * MB, "kong_core_db_cache_miss": 12 * MB,
    "kong_db_cache": 128 * MB, "kong_db_cache_miss": 12 * MB, "kong_secrets": 5 * MB,
}
# Not replayed from the cache: hop-by-hop headers (content-length is the new response's own).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailers", "transfer-encoding", "upgrade", "content-length"})
OWN = frozenset({"age", "x-cache-status", "x-cache-key"})


class MemoryConfig(PluginConfig):
    dictionary_name: str = "kong_db_cache"

    @field_validator("dictionary_name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in DICTIONARIES:
            raise ValueError(f"missing shared dict '{name}'")
        return name


class ResponseHeaders(PluginConfig):
    age: bool = True
    x_cache_status: bool = Field(default=True, alias="X-Cache-Status")
    x_cache_key: bool = Field(default=True, alias="X-Cache-Key")

    model_config = {**PluginConfig.model_config, "populate_by_name": True, "serialize_by_alias": True}


class ProxyCacheConfig(PluginConfig):
    response_code: list[int] = Field(default=[200, 301, 404], min_length=1)
    request_method: list[Literal["HEAD", "GET", "POST", "PATCH", "PUT"]] = ["GET", "HEAD"]
    content_type: list[str] = ["text/plain", "application/json"]
    cache_ttl: int = Field(default=300, gt=0)
    strategy: Literal["memory"]
    cache_control: bool = False
    ignore_uri_case: bool = False
    storage_ttl: int | None = None
    memory: MemoryConfig = MemoryConfig()
    vary_query_params: list[str] | None = None
    vary_headers: list[str] | None = None
    response_headers: ResponseHeaders = ResponseHeaders()

    @field_validator("response_code")
    @classmethod
    def _codes(cls, codes: list[int]) -> list[int]:
        for code in codes:
            if not 100 <= code <= 900:
                raise ValueError("value should be between 100 and 900")
        return codes


class ProxyCache(Plugin):
    """Caches upstream responses in the node's memory, shared by its workers."""

    name = "proxy-cache"
    priority = 100
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    Config = ProxyCacheConfig

    def __init__(self, config: ProxyCacheConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.methods = frozenset(config.request_method)
        self.codes = frozenset(config.response_code)
        self.types = [t for t in map(parse_mime_type, config.content_type) if t is not None]
        self.vary_params = config.vary_query_params or None
        self.vary_headers = config.vary_headers or None
        self.limit = DICTIONARIES[config.memory.dictionary_name]
        self.store = cache_store(shared_directory(), config.memory.dictionary_name, self.limit)
        rh = config.response_headers
        self.show = {"Age": rh.age, "X-Cache-Status": rh.x_cache_status, "X-Cache-Key": rh.x_cache_key}
        self.state_key = f"proxy-cache:{entity.get('id')}"

    def _header(self, ctx: RequestContext, debug: bool, name: str, value: str) -> None:
        if debug or self.show[name]:
            ctx.set_response_header(name, value)

    def access(self, ctx: RequestContext) -> None:
        conf = self.config
        debug = ctx.get_header("Kong-Debug") is not None
        cc = parse_directive_header(ctx.get_header("Cache-Control")) if conf.cache_control else {}
        if ctx.method not in self.methods or cc.get("no-store") or cc.get("no-cache"):
            self._header(ctx, debug, "X-Cache-Status", "Bypass")
            return
        key = self.cache_key(ctx)
        self._header(ctx, debug, "X-Cache-Key", key)
        now = time.time()
        found = self.store.fetch(key, now)
        if found is None:
            if cc.get("only-if-cached"):
                ctx.exit(504)
                return
            return self._signal(ctx, debug, key, "Miss")
        meta, body = found
        if meta.get("version") != CACHE_VERSION:
            self.store.purge(key)
            return self._signal(ctx, debug, key, "Bypass")
        age = int(now) - meta["timestamp"]
        if conf.cache_control:
            max_age, max_stale, min_fresh = (_number(cc.get(d)) for d in ("max-age", "max-stale", "min-fresh"))
            if ((max_age is not None and age > max_age)
                    or (max_stale is not None and age - meta["ttl"] > max_stale)
                    or (min_fresh is not None and meta["ttl"] - age < min_fresh)):
                return self._signal(ctx, debug, key, "Refresh")
        elif age > conf.cache_ttl:
            return self._signal(ctx, debug, key, "Refresh")
        self._hit(ctx, debug, key, meta, body, age)

    def _hit(self, ctx: RequestContext, debug: bool, key: str, meta: dict, body: bytes, age: int) -> None:
        ctx.remove_response_header("X-Cache-Key")
        for name, values in meta["headers"].items():
            low = name.lower()
            if low in HOP_BY_HOP or low in OWN or "ratelimit-remaining" in low:
                continue
            for value in values:
                ctx.add_response_header(name, value)
        self._header(ctx, debug, "Age", str(age))
        self._header(ctx, debug, "X-Cache-Status", "Hit")
        self._header(ctx, debug, "X-Cache-Key", key)
        ctx.shared["proxy_cache_hit"] = True
        ctx.exit(meta["status"], body if ctx.method != "HEAD" else b"")

    def _signal(self, ctx: RequestContext, debug: bool, key: str, status: str) -> None:
        """Go upstream, and store what comes back if it may be cached."""
        ctx.shared[self.state_key] = _Pending(key)
        self._header(ctx, debug, "X-Cache-Status", status)

    def response(self, ctx: RequestContext) -> None:
        pending = ctx.shared.get(self.state_key)
        if pending is None:
            return
        cc = parse_directive_header(ctx.get_response_header("Cache-Control")) if self.config.cache_control else {}
        ttl = self.cacheable_ttl(ctx, cc)
        if ttl is None:
            del ctx.shared[self.state_key]
            self._header(ctx, ctx.get_header("Kong-Debug") is not None, "X-Cache-Status", "Bypass")
            return
        headers: dict[str, list[str]] = {}
        for name, value in ctx.response_headers:  # type: ignore[attr-defined]
            headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        pending.status = ctx.response_status
        pending.headers = headers
        pending.ttl = ttl

    def cacheable_ttl(self, ctx: RequestContext, cc: dict[str, Any]) -> float | None:
        """The resource's TTL when the response may be cached, else None (Kong's cacheable_response)."""
        if ctx.response_status not in self.codes:
            return None
        got = parse_mime_type(ctx.get_response_header("Content-Type") or "")
        if got is None or not any(_type_matches(got, want) for want in self.types):
            return None
        if not self.config.cache_control:
            return self.config.cache_ttl
        if cc.get("private") or cc.get("no-store") or cc.get("no-cache"):
            return None
        ttl = resource_ttl(cc, ctx.get_response_header("Expires"))
        return ttl if ttl > 0 else None

    def body(self, ctx: RequestContext, chunk: bytes, eof: bool) -> None:
        pending = ctx.shared.get(self.state_key)
        if pending is None or pending.headers is None:
            return
        if chunk:
            pending.size += len(chunk)
            if pending.size > self.limit:  # cannot fit the dictionary: stop collecting
                del ctx.shared[self.state_key]
                return
            pending.chunks.append(chunk)
        if eof:
            del ctx.shared[self.state_key]
            self.save(pending)

    def save(self, pending: "_Pending") -> None:
        now = int(time.time())
        body = b"".join(pending.chunks)
        meta = {"status": pending.status, "headers": pending.headers, "body_len": len(body), "timestamp": now,
                "ttl": pending.ttl, "version": CACHE_VERSION, "req_body": None}
        conf = self.config
        ttl = conf.storage_ttl or (pending.ttl if conf.cache_control else conf.cache_ttl)
        self.store.store(pending.key, meta, body, ttl, now)

    def cache_key(self, ctx: RequestContext) -> str:
        """Kong's key (cache_key.lua), so a key computed for Kong names the same entry here."""
        consumer, route = ctx.consumer, ctx.route
        route_id = route.get("id") if route else None
        if consumer and route_id:
            prefix = f"{consumer['id']}:{route_id}"
        else:
            prefix = route_id or "default"
        # Kong's `uri` is ngx.var.request (the request line) with everything from a `?` removed.
        uri = f"{ctx.method} {ctx.path}" if ctx.query else f"{ctx.method} {ctx.path} HTTP/{ctx.http_version}"
        if self.config.ignore_uri_case:
            uri = uri.lower()
        args = parse_query(ctx.query)
        params = _vary_key(args, self.vary_params if self.vary_params else sorted(args))
        headers = ""
        if self.vary_headers:
            present = {}
            for name in self.vary_headers:
                values = [v for k, v in ctx.get_headers() if k.lower() == name.lower()]
                if values:
                    present[name] = values if len(values) > 1 else values[0]
            headers = _vary_key(present, self.vary_headers)
        text = f"{prefix}|{ctx.method}|{uri}|{params}|{headers}"
        return hashlib.sha256(text.encode()).hexdigest()


class _Pending:
    """A cacheable request on its way upstream: what to store when its response ends."""

    __slots__ = ("key", "status", "headers", "ttl", "chunks", "size")

    def __init__(self, key: str) -> None:
        self.key = key
        self.status: int | None = None
        self.headers: dict[str, list[str]] | None = None
        self.ttl: float = 0
        self.chunks: list[bytes] = []
        self.size = 0


def parse_query(query: str) -> dict[str, Any]:
    """Query args as Kong's get_query: a flag without `=` is True, a repeated name a list."""
    args: dict[str, Any] = {}
    for part in query.split("&") if query else ():
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = unquote_plus(name)
        item: Any = unquote_plus(value) if eq else True
        if name in args:
            old = args[name]
            args[name] = [*old, item] if isinstance(old, list) else [old, item]
        else:
            args[name] = item
    return args


def _vary_key(args: Mapping[str, Any], fields: list[str]) -> str:
    """Kong's generate_key_from: `field=value` (lists sorted, comma-joined; flags bare), `:`-joined."""
    parts = []
    for field in fields:
        arg = args.get(field)
        if arg is None or arg is False:
            continue
        if isinstance(arg, list):
            parts.append(field + "=" + ",".join(sorted("true" if v is True else v for v in arg)))
        elif arg is True:
            parts.append(field)
        else:
            parts.append(f"{field}={arg}")
    return ":".join(parts)


def parse_directive_header(value: str | None) -> dict[str, Any]:
    """Cache-Control directives: name (lowercased) -> number, text or True."""
    out: dict[str, Any] = {}
    for part in (value or "").split(","):
        name, eq, arg = part.strip().partition("=")
        if not name:
            continue
        arg = arg.strip().strip('"')
        out[name.strip().lower()] = (_number(arg) if _number(arg) is not None else arg) if eq and arg else True
    return out


def resource_ttl(cc: Mapping[str, Any], expires: str | None) -> float:
    """s-maxage, max-age, else Expires - now; never below 0 (Kong's calculate_resource_ttl)."""
    max_age = _number(cc.get("s-maxage"))
    if max_age is None:
        max_age = _number(cc.get("max-age"))
    if max_age is None and expires:
        try:
            max_age = email.utils.parsedate_to_datetime(expires).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            max_age = None
    return max(max_age, 0) if max_age is not None else 0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_mime_type(text: str) -> tuple[str, str, dict[str, str]] | None:
    """`type/subtype; k=v` -> (type, subtype, params), lowercased; None when not a media type."""
    media, *params = text.split(";")
    kind, slash, sub = media.strip().lower().partition("/")
    if not slash or not kind or not sub:
        return None
    found = {}
    for param in params:
        key, eq, value = param.partition("=")
        if eq and key.strip():
            found[key.strip().lower()] = value.strip().strip('"')
    return kind, sub, found


def _type_matches(got: tuple[str, str, dict[str, str]], want: tuple[str, str, dict[str, str]]) -> bool:
    return ((want[0] == "*" or got[0] == want[0]) and (want[1] == "*" or got[1] == want[1])
            and got[2] == want[2])


PLUGIN = ProxyCache
