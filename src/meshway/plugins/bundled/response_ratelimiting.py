"""response-ratelimiting: limits counted from what the upstream says each response cost (Kong's rules).

- `access`: the usage of every `config.limits.<name>.<period>` for this client (consumer,
  credential or IP); the upstream gets `X-RateLimit-Remaining-<name>` (the least remaining over
  the name's periods). With `block_on_first_violation`, a limit already used up answers 429
  `API rate limit exceeded for '<name>'` before the upstream is called.
- `response`: the upstream's `X-Kong-Limit: <name>=<n>, ...` (`header_name`) says what this
  response costs; the client gets `X-RateLimit-Limit-<name>-<period>` and
  `X-RateLimit-Remaining-<name>-<period>` (unless `hide_client_headers`), never the upstream's
  header; a response costing a limit already used up is replaced by a bare 429.
- `log`: the costs are counted (policy local: the node's shared counters, as Kong's shared dict;
  redis: INCRBY per period; cluster: the node's PostgreSQL, see `_cluster_counters`).
"""
from __future__ import annotations

import logging
from typing import Any, Literal, Mapping

from pydantic import Field, field_validator, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext, shared_counters
from meshway.plugins.bundled import _ratelimit as rl
from meshway.plugins.bundled._cluster_counters import check_cluster_policy, cluster_counters
from meshway.plugins.bundled.rate_limiting import RedisConfig, _merge_flat_redis

log = logging.getLogger("meshway.plugins")
UNEXPECTED = {"message": "An unexpected error occurred"}
PERIOD_NAMES = tuple(p for p, _ in rl.PERIODS)
MAX_COST = 1 << 40


class Limit(PluginConfig):
    second: float | None = Field(default=None, gt=0)
    minute: float | None = Field(default=None, gt=0)
    hour: float | None = Field(default=None, gt=0)
    day: float | None = Field(default=None, gt=0)
    month: float | None = Field(default=None, gt=0)
    year: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "Limit":
        limits = [(p, getattr(self, p)) for p in PERIOD_NAMES if getattr(self, p) is not None]
        if not limits:
            raise ValueError("at least one of these fields must be non-empty: "
                             + ", ".join(f"'{p}'" for p in PERIOD_NAMES))
        for i, (lower, v1) in enumerate(limits):
            for upper, v2 in limits[i + 1:]:
                if v2 < v1:
                    raise ValueError(f"the limit for {upper}({v2:.1f}) cannot be lower than the limit for {lower}({v1:.1f})")
        return self


class ResponseRateLimitingConfig(PluginConfig):
    header_name: str = "x-kong-limit"
    limit_by: Literal["consumer", "credential", "ip"] = "consumer"
    policy: Literal["local", "cluster", "redis"] = "local"
    fault_tolerant: bool = True
    redis: RedisConfig = RedisConfig()
    block_on_first_violation: bool = False
    hide_client_headers: bool = False
    limits: dict[str, Limit] = Field(min_length=1)

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
    def _check(self) -> "ResponseRateLimitingConfig":
        if self.policy == "redis" and not self.redis.host:
            raise ValueError("redis.host is required when policy is 'redis'")
        return self


class ResponseRateLimiting(Plugin):
    """Counts what each response costs, as the upstream says in `X-Kong-Limit`."""

    name = "response-ratelimiting"
    priority = 900
    Config = ResponseRateLimitingConfig
    protocols = ("grpc", "grpcs", "http", "https")
    referenceable = ("redis.username", "redis.password")

    def __init__(self, config: ResponseRateLimitingConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        # (name, period, limit) for every configured period, in Kong's period order.
        self.items = tuple((name, p, _int(getattr(limit, p))) for name, limit in config.limits.items()
                           for p in PERIOD_NAMES if getattr(limit, p) is not None)
        self.names = tuple(config.limits)
        self.periods = tuple(p for _, p, _ in self.items)
        self.windows = tuple(rl.WINDOW[p] for p in self.periods)
        self.clock = rl.Windows(self.periods)
        self.shared_key = f"response-ratelimiting:{entity.get('id')}"
        self.upstream_headers = {name: f"X-RateLimit-Remaining-{name}" for name in self.names}
        self.client_headers = tuple((f"X-RateLimit-Limit-{n}-{p}", str(limit), f"X-RateLimit-Remaining-{n}-{p}")
                                    for n, p, limit in self.items)
        self.scope = rl.plugin_scope(entity)
        self.backend = _backend(config, entity)
        self._sec, self._by_ident, self._starts = -1, {}, {}
        if self.backend.sync:
            self.__class__ = _LocalResponseRateLimiting

    # -- access --------------------------------------------------------------------------------
    def _keys(self, ctx: RequestContext, now: float) -> tuple[list, tuple[int, ...]]:
        """This second's counter keys for the client (made once per second and client) and the
        windows' ends; keys are the backend's (table keys for policy local, texts otherwise)."""
        sec = int(now)
        if sec != self._sec:
            self._sec, self._by_ident = sec, {}
            self._starts = self.clock.starts(now)
        ident = self.identify(ctx)
        keys = self._by_ident.get(ident)
        if keys is None:
            starts = self._starts
            texts = [f"response-ratelimit:{self.scope}:{ident}:{starts[p] * 1000}:{n}:{p}" for n, p, _ in self.items]
            keys = self._by_ident[ident] = self.backend.keys(texts)
        return keys, self.clock.expires

    def identify(self, ctx: RequestContext) -> str:
        by = self.config.limit_by
        if by == "consumer":
            who = ctx.consumer or ctx.credential
            return who["id"] if who else ctx.client_ip
        if by == "credential":
            return ctx.credential["id"] if ctx.credential else ctx.client_ip
        return ctx.client_ip

    def access_sync(self, ctx: RequestContext) -> None:
        now = rl.now()
        keys, expires = self._keys(ctx, now)
        self.check(ctx, keys, expires, now, self.backend.usage_now(keys, now))

    async def access(self, ctx: RequestContext) -> None:
        now = rl.now()
        keys, expires = self._keys(ctx, now)
        try:
            usage = await rl.in_task(self.backend.usage(keys, now))
        except Exception as e:  # datastore down: Kong's fault_tolerant decides
            log.error("response-ratelimiting: failed to get usage: %s", e)
            if not self.config.fault_tolerant:
                ctx.exit(500, UNEXPECTED)
            return
        self.check(ctx, keys, expires, now, usage)

    def check(self, ctx: RequestContext, keys: list, expires: list, now: float, usage: list[int]) -> None:
        remaining = [limit - used for (_, _, limit), used in zip(self.items, usage)]
        least: dict[str, float] = {}
        for (name, _, _), left in zip(self.items, remaining):
            if self.config.block_on_first_violation and left <= 0:
                ctx.exit(429, {"message": f"API rate limit exceeded for '{name}'"})
                return
            if name not in least or left < least[name]:
                least[name] = left
        for name, left in least.items():
            ctx.set_header(self.upstream_headers[name], str(_int(left)))
        ctx.shared[self.shared_key] = _State(keys, expires, now, remaining)

    # -- response ------------------------------------------------------------------------------
    def response(self, ctx: RequestContext) -> None:
        state = ctx.shared.get(self.shared_key)
        value = ctx.get_response_header(self.config.header_name)
        if value is not None:
            ctx.remove_response_header(self.config.header_name)
        if state is None:
            return
        costs = self.parse([value] if value is not None else [])
        state.costs = costs
        stop = False
        headers = []
        for (name, _, _), names, left in zip(self.items, self.client_headers, state.remaining):
            cost = costs.get(name) or 0
            if not self.config.hide_client_headers:
                headers += ((names[0], names[1]), (names[2], str(_int(max(0, left - cost)))))
            if cost > 0 and left <= 0:
                stop = True
        if headers:
            ctx.set_response_headers(headers)
        if stop:
            state.costs = {}
            ctx.exit(429)

    def parse(self, values: list[str]) -> dict[str, int]:
        """Kong's parse_header: `name=n` pairs, comma-separated; unknown names and non-numbers ignored."""
        costs: dict[str, int] = {}
        for value in values:
            for part in value.split(","):
                pieces = part.split("=")
                if len(pieces) != 2:
                    continue
                name = pieces[0].strip()
                if name in self.config.limits:
                    try:
                        cost = int(pieces[1].strip())
                    except ValueError:
                        costs.pop(name, None)
                        continue
                    # Within what a counter (int64) can add up: a hostile upstream cannot break counting.
                    costs[name] = max(-MAX_COST, min(MAX_COST, cost))
        return costs

    # -- log -----------------------------------------------------------------------------------
    def _increments(self, ctx: RequestContext) -> tuple["_State", list[int]] | None:
        state = ctx.shared.get(self.shared_key)
        if state is None or not state.costs:
            return None
        amounts = [state.costs.get(name) or 0 for name, _, _ in self.items]
        return (state, amounts) if any(amounts) else None

    def log_sync(self, ctx: RequestContext) -> None:
        got = self._increments(ctx)
        if got is not None:
            state, amounts = got
            self.backend.add_now(state.keys, amounts, state.expires, state.now)

    async def log(self, ctx: RequestContext) -> None:
        got = self._increments(ctx)
        if got is None:
            return
        state, amounts = got
        try:
            await rl.in_task(self.backend.add(state.keys, amounts, self.windows, state.expires, state.now))
        except Exception as e:
            log.error("response-ratelimiting: could not increment counters: %s", e)


class _LocalResponseRateLimiting(ResponseRateLimiting):
    """Policy local never waits: plain `access` and `log`."""

    access = ResponseRateLimiting.access_sync  # type: ignore[assignment]
    log = ResponseRateLimiting.log_sync  # type: ignore[assignment]


class _State:
    __slots__ = ("keys", "expires", "now", "remaining", "costs")

    def __init__(self, keys: list, expires: list, now: float, remaining: list) -> None:
        self.keys, self.expires, self.now, self.remaining = keys, expires, now, remaining
        self.costs: dict[str, int] = {}


class LocalBackend:
    """The node's shared counters (Kong's `kong_rate_limiting_counters` dict)."""

    sync = True

    def __init__(self) -> None:
        self.table = shared_counters(rl.LOCAL_TABLE)

    def keys(self, texts: list[str]) -> list:
        return [self.table.key(t) for t in texts]

    def usage_now(self, keys: list, now: float) -> list[int]:
        return self.table.totals(keys, now)

    def add_now(self, keys: list, amounts: list[int], expires: tuple, now: float) -> None:
        for key, amount, exp in zip(keys, amounts, expires):
            if amount:
                self.table.add((key,), (exp,), now, amount)


class RedisBackend:
    """GET per period, then INCRBY + EXPIRE per period in one pipeline (Kong's redis policy)."""

    sync = False

    def __init__(self, config: ResponseRateLimitingConfig) -> None:
        self.counters = rl.RedisCounters(rl.redis_options(config.redis))

    def keys(self, texts: list[str]) -> list[str]:
        return texts

    async def usage(self, keys: list[str], now: float) -> list[int]:
        values = await self.counters.client().mget(keys)
        return [int(v) if v is not None else 0 for v in values]

    async def add(self, keys: list[str], amounts: list[int], windows: tuple, expires: list[int], now: float) -> None:
        pipe = self.counters.client().pipeline(transaction=False)
        for key, amount, window in zip(keys, amounts, windows):
            if amount:
                pipe.incrby(key, amount)
                pipe.expire(key, window, nx=True)
        await pipe.execute()


class ClusterBackend:
    """The node's PostgreSQL, shared by every node on it (Kong's cluster policy)."""

    sync = False

    def __init__(self) -> None:
        self.counters = cluster_counters()

    def keys(self, texts: list[str]) -> list[str]:
        return texts

    async def usage(self, keys: list[str], now: float) -> list[int]:
        return await self.counters.usage(keys)

    async def add(self, keys: list[str], amounts: list[int], windows: tuple, expires: list[int], now: float) -> None:
        await self.counters.add(keys, amounts, expires)


def _backend(config: ResponseRateLimitingConfig, entity: Mapping[str, Any]) -> Any:
    if config.policy == "redis":
        return RedisBackend(config)
    if config.policy == "cluster":
        return ClusterBackend()
    return LocalBackend()


def _int(value: float) -> float | int:
    return int(value) if value == int(value) else value


PLUGIN = ResponseRateLimiting
