"""rate-limiting: fixed-window request limits per second ... year, per consumer, IP, header..."""
from __future__ import annotations

import logging
from typing import Any, Literal, Mapping

from pydantic import Field, field_validator, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext, shared_counters
from meshway.plugins.bundled import _ratelimit as rl
from meshway.plugins.bundled._cluster_counters import check_cluster_policy, cluster_counters

log = logging.getLogger("meshway.plugins")
UNEXPECTED = {"message": "An unexpected error occurred"}


class RedisConfig(PluginConfig):
    """Kong's shared redis record (kong/tools/redis/schema.lua), `config.redis` since Kong 3.6."""

    host: str | None = None
    port: int = Field(default=6379, ge=0, le=65535)
    timeout: int = Field(default=2000, ge=0, le=2**31 - 2)
    username: str | None = None
    password: str | None = None
    database: int = 0
    ssl: bool = False
    ssl_verify: bool = False
    server_name: str | None = None


# Kong's deprecated flat fields (until 4.0): each is a shorthand for a field of `redis`.
FLAT_REDIS = {f"redis_{name}": name for name in
              ("host", "port", "password", "username", "ssl", "ssl_verify", "server_name", "timeout", "database")}


class RateLimitingConfig(PluginConfig):
    """Kong's rate-limiting schema: the `redis` record and its flat `redis_*` shorthands (input
    only: a stored config has the record alone, so a later PATCH of either never conflicts with
    a stale copy); `sync_rate` is accepted and ignored."""

    second: float | None = Field(default=None, gt=0)
    minute: float | None = Field(default=None, gt=0)
    hour: float | None = Field(default=None, gt=0)
    day: float | None = Field(default=None, gt=0)
    month: float | None = Field(default=None, gt=0)
    year: float | None = Field(default=None, gt=0)
    limit_by: Literal["consumer", "credential", "ip", "service", "header", "path"] = "consumer"
    header_name: str | None = None
    path: str | None = None
    policy: Literal["local", "cluster", "redis"] = "local"
    fault_tolerant: bool = True
    redis: RedisConfig = RedisConfig()
    hide_client_headers: bool = False
    error_code: int = 429
    error_message: str = "API rate limit exceeded"
    sync_rate: float = -1

    @field_validator("policy")
    @classmethod
    def _policy(cls, policy: str) -> str:
        check_cluster_policy(policy)
        return policy

    @model_validator(mode="before")
    @classmethod
    def _redis_shorthands(cls, data: Any) -> Any:
        return _merge_flat_redis(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _check(self) -> "RateLimitingConfig":
        limits = [(p, getattr(self, p)) for p, _ in rl.PERIODS if getattr(self, p) is not None]
        if not limits:
            raise ValueError("at least one of these fields must be non-empty: "
                             "'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'")
        for (lower, v1), (upper, v2) in zip(limits, limits[1:]):
            if v2 < v1:
                raise ValueError(f"The limit for {upper}({v2:.1f}) cannot be lower than the limit for {lower}({v1:.1f})")
        if self.policy == "redis" and not self.redis.host:
            raise ValueError("redis.host is required when policy is 'redis'")
        for when, field in (("header", "header_name"), ("path", "path")):
            if self.limit_by == when and not getattr(self, field):
                raise ValueError(f"{field} is required when limit_by is '{when}'")
        return self


def _merge_flat_redis(data: dict) -> dict:
    """Kong's rules for a deprecated shorthand beside its new field: a non-null `redis_host`
    fills `redis.host` (a null one, as `deck dump` writes, is ignored); both set and different
    is an error naming both."""
    data = dict(data)
    record = data.get("redis")
    if record is not None and not isinstance(record, dict):
        return data  # the record's own validation names the error
    record = dict(record or {})
    for flat, name in FLAT_REDIS.items():
        value = data.pop(flat, None)
        if value is None:
            continue
        if record.get(name) is not None and record[name] != value:
            raise ValueError("both deprecated and new field are used but their values mismatch: "
                             f"{flat} = {value} vs redis.{name} = {record[name]}")
        record[name] = value
    if record or "redis" in data:
        data["redis"] = record
    return data


class RateLimiting(Plugin):
    """Limits how many requests a client makes per period."""

    name = "rate-limiting"
    priority = 910
    Config = RateLimitingConfig
    referenceable = ("redis.username", "redis.password")  # `{vault://...}` allowed (Kong's redis schema)

    def __init__(self, config: RateLimitingConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        # (period, limit, window); whole-number limits as ints so header values need no formatting.
        self.limits = tuple((p, _int(getattr(config, p)), w) for p, w in rl.PERIODS if getattr(config, p) is not None)
        self.windows = tuple(w for _, _, w in self.limits)
        self.maxima = tuple(limit for _, limit, _ in self.limits)
        self.clock = rl.Windows(tuple(p for p, _, _ in self.limits))
        # The class's function, called with self: a bound method kept on its own instance is a
        # reference cycle, and the worker freezes each runtime it applies (gc.freeze), so a cycle
        # in a replaced runtime would never be freed.
        self.identify = getattr(RateLimiting, f"_by_{config.limit_by}")
        self.scope = rl.plugin_scope(entity)  # the counters' route and service: the plugin's own, as Kong
        self.by_consumer = config.limit_by == "consumer"
        self.redis = rl.RedisCounters(rl.redis_options(config.redis)) if config.policy == "redis" else None
        self.cluster = cluster_counters() if config.policy == "cluster" else None
        self.local = shared_counters(rl.LOCAL_TABLE) if config.policy == "local" else None
        self.error_body = {"message": config.error_message}
        self.header_names = tuple((f"X-RateLimit-Limit-{p.capitalize()}", str(limit), f"X-RateLimit-Remaining-{p.capitalize()}")
                                  for p, limit, _ in self.limits)
        self.client_headers = not config.hide_client_headers
        self.single = (self.header_names[0], self.maxima[0]) if len(self.limits) == 1 else None
        # One period with a whole-number limit: its header pairs as the Context keeps them, encoded
        # once (`_pairs`: Limit pair, Remaining name, RateLimit-Limit pair; `_reset_pair` per second).
        self._pairs = _encoded_pairs(self.single) if self.single is not None and self.single[1].__class__ is int else None
        self._reset_pair = (b"RateLimit-Reset", b"")
        self._expires = 0  # the one period's window end, this second
        # The table's take of one key; on a node's shared table, in C (`ShmCounters.fast_take_one`).
        self._take_one = getattr(self.local, "fast_take_one", None) or getattr(self.local, "take_one", None)
        # Per second (see `_roll`): the second, the counter keys by identifier and the
        # RateLimit-Reset value of each period.
        self._sec = -1
        self._keys: dict[tuple, list] = {}
        self._resets: tuple[str, ...] = ()
        if self.local is not None:
            self.__class__ = _LocalRateLimiting  # policy local never waits: `access` is a plain function

    def access_local(self, ctx: RequestContext) -> None:
        """Policy local: check, then count when it passes (Kong's order); never waits, so the
        engine calls it as a plain function (the `access` of `_LocalRateLimiting`)."""
        now = rl.now()
        if int(now) != self._sec:  # `_keys_now`, inlined: this runs per request
            self._roll(now)
        if self.by_consumer:  # `_by_consumer`, inline (the default limit_by)
            who = ctx.consumer or ctx.credential
            ident = who["id"] if who else ctx.client_ip
        else:
            ident = self.identify(self, ctx)
        keys = self._keys.get(ident) or self._new_keys(ident)
        single = self.single
        if single is None:
            self.answer(ctx, self.local.take(keys, self.maxima, self.clock.expires, now))
            return
        # One period (the usual config): one counter, no lists, and `headers`' pairs inline.
        limit = single[1]
        n = self._take_one(keys[0], limit, self._expires, now)
        if n < 0:  # the C step left it to the table's Python method (see `ShmCounters.fast_take_one`)
            n = self.local.take_one(keys[0], limit, self._expires, now)
        if n >= limit:
            self.answer(ctx, [n])
        elif self.client_headers:
            left = limit - n - 1
            pairs = self._pairs
            if pairs is not None and not ctx.response_headers:
                # Nothing set yet (the usual case): the five encoded pairs, as `set_response_headers`
                # would append them, built from what `_roll` and `__init__` encoded once.
                text = b"%d" % left if left > 0 else b"0"
                ctx.response_headers = [pairs[0], (pairs[1], text), pairs[2], (b"RateLimit-Remaining", text),
                                        self._reset_pair]
                return
            (limit_name, limit_text, remaining_name) = single[0]
            text = str(left) if left > 0 else "0"
            ctx.set_response_headers([(limit_name, limit_text), (remaining_name, text), ("RateLimit-Limit", limit_text),
                                      ("RateLimit-Remaining", text), ("RateLimit-Reset", self._resets[0])])

    async def access(self, ctx: RequestContext) -> None:
        """Policies redis and cluster (for policy local the instance is a `_LocalRateLimiting`:
        `access_local`)."""
        keys = self._keys_now(ctx, rl.now())
        usage = await (self.redis_usage(ctx, keys) if self.cluster is None else self.cluster_usage(ctx, keys))
        if usage is not None:  # None: counters unavailable, fault_tolerant let it through (or we answered)
            self.answer(ctx, usage)

    def _keys_now(self, ctx: RequestContext, now: float) -> list:
        if int(now) != self._sec:
            self._roll(now)
        ident = self.identify(self, ctx)
        return self._keys.get(ident) or self._new_keys(ident)

    def answer(self, ctx: RequestContext, usage: list[int]) -> None:
        """Refuse when a period's count reached its limit; else set the headers on the response to
        come, as Kong 3 does in its access phase (an answer a later plugin gives has them too).
        No `response` phase: a route whose plugins leave the response alone is relayed by the
        compiled core, which applies headers set before the response."""
        single = self.single
        if single is not None and usage[0] < single[1]:  # one period, request passed: the usual case
            if self.client_headers:
                ctx.set_response_headers(self.headers(usage, None))
            return
        stop = None
        for count, limit, period in zip(usage, self.maxima, self.clock.periods):
            if count >= limit:
                stop = period
        if stop is not None:
            headers = dict(self.headers(usage, stop)) if self.client_headers else {}
            if headers:
                headers["Retry-After"] = headers["RateLimit-Reset"]
            ctx.exit(self.config.error_code, self.error_body, headers)
        elif self.client_headers:
            ctx.set_response_headers(self.headers(usage, None))

    def _roll(self, now: float) -> None:
        """A new second: window starts, keys and reset values of the last one are stale."""
        starts = self.clock.starts(now)
        sec = self._sec = int(now)
        self._keys = {}
        # floor(now - start) is sec - start: starts are whole seconds.
        self._resets = tuple(str(max(1, w - (sec - starts[p]))) for p, _, w in self.limits)
        self._reset_pair = (b"RateLimit-Reset", self._resets[0].encode())
        self._expires = self.clock.expires[0]

    def _new_keys(self, ident: str) -> list:
        """The counter keys (table keys for policy local, names for redis) of this second."""
        starts = self.clock.starts(self._sec)
        texts = [rl.counter_key(self.scope, ident, p, starts[p]) for p, _, _ in self.limits]
        keys = self._keys[ident] = texts if self.local is None else list(map(self.local.key, texts))
        return keys

    async def redis_usage(self, ctx: RequestContext, keys: list[str]) -> list[int] | None:
        """Requests counted in each window before this one; counts this one in every window."""
        try:
            return [n - 1 for n in await rl.in_task(self.redis.increment(keys, self.windows))]
        except Exception as e:  # redis down or slow: Kong's fault_tolerant decides
            return self._unavailable(ctx, e)

    async def cluster_usage(self, ctx: RequestContext, keys: list[str]) -> list[int] | None:
        """Requests counted in each window before this one (PostgreSQL); counts this one if it passes."""
        try:
            return await rl.in_task(self.cluster.take(keys, self.maxima, self.clock.expires))
        except Exception as e:  # database down or slow: Kong's fault_tolerant decides
            return self._unavailable(ctx, e)

    def _unavailable(self, ctx: RequestContext, e: Exception) -> None:
        log.error("rate-limiting: failed to get usage: %s", e)
        if not self.config.fault_tolerant:
            ctx.exit(500, UNEXPECTED)
        return None

    def headers(self, usage: list[int], stop: str | None) -> list[tuple[str, str]]:
        """Kong's headers: per period, plus RateLimit-* for the most constrained period.

        This request takes one slot of every period, or, when refused, only of the period
        that refused it.
        """
        if self.single is not None and stop is None:  # one period, request passed: the usual case
            (limit_name, limit, remaining_name), maximum = self.single
            left = maximum - usage[0] - 1
            text = str(left) if left > 0 else "0"
            return [(limit_name, limit), (remaining_name, text), ("RateLimit-Limit", limit),
                    ("RateLimit-Remaining", text), ("RateLimit-Reset", self._resets[0])]
        headers, best = [], None
        for count, (period, limit, window), names, reset in zip(usage, self.limits, self.header_names, self._resets):
            left = max(0, limit - count - (1 if stop is None or stop == period else 0))
            text = str(left)
            headers += ((names[0], names[1]), (names[2], text))
            if best is None or left < best[1] or (left == best[1] and window > best[2]):
                best = (names[1], left, window, text, reset)
        headers += (("RateLimit-Limit", best[0]), ("RateLimit-Remaining", best[3]), ("RateLimit-Reset", best[4]))
        return headers

    # identifiers, by limit_by; all fall back to the client IP as Kong does
    def _by_consumer(self, ctx: RequestContext) -> str:
        who = ctx.consumer or ctx.credential
        return who["id"] if who else ctx.client_ip

    def _by_credential(self, ctx: RequestContext) -> str:
        return ctx.credential["id"] if ctx.credential else ctx.client_ip

    def _by_ip(self, ctx: RequestContext) -> str:
        return ctx.client_ip

    def _by_service(self, ctx: RequestContext) -> str:
        return (ctx.service or {}).get("id") or ctx.client_ip

    def _by_header(self, ctx: RequestContext) -> str:
        return ctx.get_header(self.config.header_name) or ctx.client_ip

    def _by_path(self, ctx: RequestContext) -> str:
        return self.config.path if ctx.path == self.config.path else ctx.client_ip


def _encoded_pairs(single: tuple) -> tuple[tuple[bytes, bytes], bytes, tuple[bytes, bytes]]:
    """A one-period limit's header pairs as `Context.set_response_headers` encodes them (token
    names, ASCII digits: nothing to escape): (X-RateLimit-Limit-<Period>, limit), the
    X-RateLimit-Remaining-<Period> name, (RateLimit-Limit, limit)."""
    (limit_name, limit_text, remaining_name), _ = single
    limit = limit_text.encode("ascii")
    return (limit_name.encode("ascii"), limit), remaining_name.encode("ascii"), (b"RateLimit-Limit", limit)


def _int(value: float) -> float | int:
    return int(value) if value == int(value) else value


class _LocalRateLimiting(RateLimiting):
    """Policy local: `access` is `access_local`, which never waits, so the engine calls it as a
    plain function. A class rather than `self.access = self.access_local`: see `identify`."""

    access = RateLimiting.access_local  # type: ignore[assignment]


PLUGIN = RateLimiting
