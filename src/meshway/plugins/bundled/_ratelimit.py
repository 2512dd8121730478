"""Counters for rate-limiting: fixed windows per period, in this process or in Redis.

Rules (Kong's): a window is the calendar second/minute/hour/day/month/year in UTC that holds
`now`; its counter key names route, service, identifier, window start and period, so
counters outlive config reloads and several nodes (redis) share them.

- policy local: the node-wide `shared_counters("rate-limiting")` table (Kong's shared dict,
  shared by every worker of the node; see meshway.plugins._shm). Check every period, then
  count the request only when it passes, as Kong does; a counter expires when its window ends.
- `RedisCounters` (policy redis): one pipeline per request with INCR and EXPIRE per period, so
  the check-and-count is atomic per key across nodes. A request rejected by one period is
  still counted in the others (Kong reads, then increments later; this is one round trip and
  never lets two nodes both take the last slot).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any, Mapping, Sequence

from meshway.plugins import shared_counters

PERIODS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400),
           ("month", 2592000), ("year", 31536000))
WINDOW = dict(PERIODS)
LOCAL_TABLE = "rate-limiting"  # the shared_counters table of policy local


class Windows:
    """Start and end of the current window of each period; month/year recomputed once a day.

    `expires`: the ends of the windows of `periods`, in that order, for the second of the
    last `starts` call (so a request computes them once a second, not once per request).
    """

    def __init__(self, periods: tuple[str, ...] = ()) -> None:
        self.periods = periods
        self.expires: tuple[int, ...] = ()
        self._day = -1
        self._month_year: tuple[dict[str, int], dict[str, int]] = ({}, {})
        self._sec = -1
        self._starts: dict[str, int] = {}
        self._ends: dict[str, int] = {}

    def starts(self, now: float) -> dict[str, int]:
        """Window starts (whole seconds, UTC) by period; the same dict all through a second."""
        sec = int(now)
        if sec != self._sec:
            self._sec = sec
            self._starts, self._ends = self._compute(sec)
            self.expires = tuple(self._ends[p] for p in self.periods)
        return self._starts

    def _compute(self, sec: int) -> tuple[dict[str, int], dict[str, int]]:
        day = sec - sec % 86400
        if day != self._day:
            self._day, self._month_year = day, _month_year(day)
        starts = {"second": sec, "minute": sec - sec % 60, "hour": sec - sec % 3600, "day": day}
        ends = {p: start + WINDOW[p] for p, start in starts.items()}
        month_year_starts, month_year_ends = self._month_year
        return {**starts, **month_year_starts}, {**ends, **month_year_ends}


def _month_year(day: int) -> tuple[dict[str, int], dict[str, int]]:
    """Calendar month and year of a day: their starts, and their ends (months are not 30 days)."""
    d = dt.datetime.fromtimestamp(day, dt.timezone.utc)
    month, year = d.replace(day=1), d.replace(month=1, day=1)
    next_month = month.replace(year=d.year + 1, month=1) if d.month == 12 else month.replace(month=d.month + 1)
    starts = {"month": int(month.timestamp()), "year": int(year.timestamp())}
    return starts, {"month": int(next_month.timestamp()), "year": int(year.replace(year=d.year + 1).timestamp())}


NULL_ID = "00000000-0000-0000-0000-000000000000"


def plugin_scope(entity: Mapping[str, Any]) -> str:
    """`<route id>:<service id>` of the plugin entity itself (the null UUID where it has none), as
    Kong keys its counters (`get_service_and_route_ids(conf)`, from the ids the plugins iterator
    puts in `conf`): a plugin on a service counts a client's requests over all its routes, a
    global one over everything, whatever route a request took."""
    def ref(field: str) -> str:
        value = entity.get(field)
        value = value.get("id") if isinstance(value, Mapping) else value
        return value or NULL_ID

    return f"{ref('route')}:{ref('service')}"


def counter_key(scope: str, identifier: str, period: str, start: int) -> str:
    """Kong's key shape: ratelimit:<route>:<service>:<identifier>:<window start ms>:<period>."""
    return f"ratelimit:{scope}:{identifier}:{start * 1000}:{period}"


def __getattr__(name: str) -> Any:
    # `LOCAL`, this process's policy-local table, as it was before counters went node-wide.
    if name == "LOCAL":
        return shared_counters(LOCAL_TABLE)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RedisCounters:
    """Counters in Redis; one client per event loop (redis.asyncio pools are loop-bound)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # No retries: a request must not wait out backoffs while redis is down (fault_tolerant).
            self._client = aioredis.Redis(retry=Retry(NoBackoff(), 0), **self.options)
            self._loop = loop
        return self._client

    async def increment(self, keys: Sequence[str], windows: Sequence[int]) -> list[int]:
        """Count this request in every window; the counts including it."""
        pipe = self.client().pipeline(transaction=False)
        for key, window in zip(keys, windows):
            pipe.incr(key)
            pipe.expire(key, window)
        results = await pipe.execute()
        return [int(n) for n in results[::2]]


def redis_options(redis: Any) -> dict[str, Any]:
    """redis.asyncio.Redis keyword arguments from Kong's `config.redis` record (`server_name` is
    accepted but not sent: redis-py takes the SNI from `host`)."""
    timeout = redis.timeout / 1000
    options: dict[str, Any] = {
        "host": redis.host, "port": redis.port, "db": redis.database,
        "password": redis.password or None, "username": redis.username or None,
        "socket_timeout": timeout, "socket_connect_timeout": timeout,
    }
    if redis.ssl:
        options.update(ssl=True, ssl_cert_reqs="required" if redis.ssl_verify else "none",
                       ssl_check_hostname=bool(redis.ssl_verify))
    return options


def in_task(coro: Any) -> Any:
    """Run `coro` in a Task: the engine steps phases outside any Task, and redis-py's and
    psycopg's timeouts (asyncio.timeout) refuse to run without one."""
    return asyncio.ensure_future(coro)


# The clock, a module attribute so that tests can move it; time.time itself (no Python frame).
now = time.time
