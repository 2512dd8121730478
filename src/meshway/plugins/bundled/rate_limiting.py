"""rate-limiting: fixed-window request limits per second ... year, per consumer, IP, header..."""
from __future__ import annotations

import logging
import math
from typing import Any, Literal, Mapping

from pydantic import Field, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext, shared_counters
from meshway.plugins.bundled import _ratelimit as rl

log = logging.getLogger("meshway.plugins")
NULL_ID = "00000000-0000-0000-0000-000000000000"
UNEXPECTED = {"message": "An unexpected error occurred"}


class RateLimitingConfig(PluginConfig):
    """Kong's rate-limiting schema (3.x flat redis_* fields); `sync_rate` is accepted and ignored."""

    second: float | None = Field(default=None, gt=0)
    minute: float | None = Field(default=None, gt=0)
    hour: float | None = Field(default=None, gt=0)
    day: float | None = Field(default=None, gt=0)
    month: float | None = Field(default=None, gt=0)
    year: float | None = Field(default=None, gt=0)
    limit_by: Literal["consumer", "credential", "ip", "service", "header", "path"] = "consumer"
    header_name: str | None = None
    path: str | None = None
    policy: Literal["local", "redis"] = "local"
    fault_tolerant: bool = True
    redis_host: str | None = None
    redis_port: int = Field(default=6379, ge=0, le=65535)
    redis_password: str | None = None
    redis_username: str | None = None
    redis_ssl: bool = False
    redis_ssl_verify: bool = False
    redis_server_name: str | None = None
    redis_timeout: float = 2000
    redis_database: int = 0
    hide_client_headers: bool = False
    error_code: int = 429
    error_message: str = "API rate limit exceeded"
    sync_rate: float = -1

    @model_validator(mode="after")
    def _check(self) -> "RateLimitingConfig":
        limits = [(p, getattr(self, p)) for p, _ in rl.PERIODS if getattr(self, p) is not None]
        if not limits:
            raise ValueError("at least one of these fields must be non-empty: "
                             "'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'")
        for (lower, v1), (upper, v2) in zip(limits, limits[1:]):
            if v2 < v1:
                raise ValueError(f"The limit for {upper}({v2:.1f}) cannot be lower than the limit for {lower}({v1:.1f})")
        for when, field in (("redis", "redis_host"), ("header", "header_name"), ("path", "path")):
            if when in (self.policy, self.limit_by) and not getattr(self, field):
                raise ValueError(f"{field} is required when {'policy' if when == 'redis' else 'limit_by'} is '{when}'")
        return self


class RateLimiting(Plugin):
    """Limits how many requests a client makes per period."""

    name = "rate-limiting"
    priority = 910
    Config = RateLimitingConfig

    def __init__(self, config: RateLimitingConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        # (period, limit, window); whole-number limits as ints so header values need no formatting.
        self.limits = tuple((p, _int(getattr(config, p)), w) for p, w in rl.PERIODS if getattr(config, p) is not None)
        self.windows = tuple(w for _, _, w in self.limits)
        self.maxima = tuple(limit for _, limit, _ in self.limits)
        self.clock = rl.Windows(tuple(p for p, _, _ in self.limits))
        self.identify = getattr(self, f"_by_{config.limit_by}")
        self.redis = rl.RedisCounters(rl.redis_options(config)) if config.policy == "redis" else None
        self.local = shared_counters(rl.LOCAL_TABLE) if self.redis is None else None
        self.shared_key = f"rate-limiting:{entity.get('id')}"
        self.error_body = {"message": config.error_message}
        self.header_names = tuple((f"X-RateLimit-Limit-{p.capitalize()}", str(limit), f"X-RateLimit-Remaining-{p.capitalize()}")
                                  for p, limit, _ in self.limits)

    async def access(self, ctx: RequestContext) -> None:
        now = rl.now()
        starts = self.clock.starts(now)
        scope = f"{(ctx.route or {}).get('id') or NULL_ID}:{(ctx.service or {}).get('id') or NULL_ID}"
        ident = self.identify(ctx)
        keys = [rl.counter_key(scope, ident, p, starts[p]) for p, _, _ in self.limits]
        usage = await self.usage(ctx, keys, now)
        if usage is None:
            return  # counters unavailable: fault_tolerant lets the request through (or we answered)
        stop = None
        for count, (period, limit, _) in zip(usage, self.limits):
            if count >= limit:
                stop = period
        headers = None if self.config.hide_client_headers else self.headers(usage, stop, starts, now)
        if stop is not None:
            headers = headers or {}
            if "RateLimit-Reset" in headers:
                headers["Retry-After"] = headers["RateLimit-Reset"]
            return ctx.exit(self.config.error_code, self.error_body, headers)
        if headers:
            ctx.shared[self.shared_key] = headers

    def response(self, ctx: RequestContext) -> None:
        headers = ctx.shared.get(self.shared_key)
        if headers:
            for name, value in headers.items():
                ctx.set_response_header(name, value)

    async def usage(self, ctx: RequestContext, keys: list[str], now: float) -> list[int] | None:
        """Requests counted in each window before this one; counts this one when it may pass."""
        if self.local is not None:
            return self.count_local(keys, now)
        try:
            return [n - 1 for n in await self.redis.increment(keys, self.windows)]
        except Exception as e:  # redis down or slow: Kong's fault_tolerant decides
            log.error("rate-limiting: failed to get usage: %s", e)
            if not self.config.fault_tolerant:
                ctx.exit(500, UNEXPECTED)
            return None

    def count_local(self, texts: list[str], now: float) -> list[int]:
        """Node-wide counts before this request; counts it in every window when it may pass."""
        local = self.local
        keys = list(map(local.key, texts))
        counts = local.totals(keys, now)
        for count, limit in zip(counts, self.maxima):
            if count >= limit:
                return counts
        local.add(keys, self.clock.expires, now)  # access called clock.starts(now) just before
        return counts

    def headers(self, usage: list[int], stop: str | None, starts: dict[str, int], now: float) -> dict[str, str]:
        """Kong's headers: per period, plus RateLimit-* for the most constrained period.

        This request takes one slot of every period, or, when refused, only of the period
        that refused it.
        """
        headers, best = {}, None
        for count, (period, limit, window), names in zip(usage, self.limits, self.header_names):
            left = max(0, limit - count - (1 if stop is None or stop == period else 0))
            headers[names[0]], headers[names[2]] = names[1], str(left)
            if best is None or left < best[1] or (left == best[1] and window > best[2]):
                best = (names[1], left, window, period)
        reset = max(1, best[2] - math.floor(now - starts[best[3]]))
        headers["RateLimit-Limit"], headers["RateLimit-Remaining"] = best[0], str(best[1])
        headers["RateLimit-Reset"] = str(reset)
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


def _int(value: float) -> float | int:
    return int(value) if value == int(value) else value


PLUGIN = RateLimiting
