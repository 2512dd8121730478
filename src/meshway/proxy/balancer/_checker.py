"""The health-check runtime: active probes and DNS refresh for one set of compiled balancers.

Theory of operation:
- Per upstream with active checks, two loops: one probes the healthy addresses every
  `healthy.interval`, the other the unhealthy ones every `unhealthy.interval` (0 turns a loop
  off), at most `concurrency` probes at a time per upstream.
- Loops start after a random fraction of their interval, so a config change or a restart of
  many workers does not probe every target at the same instant.
- One DNS loop re-resolves hostname targets whose answer is older than its TTL (the record
  TTL when the resolver knows it, else `dns_ttl`); a failed lookup keeps the last good answer.
  `for_settings` picks the resolver from `dns_resolver`/`dns_order` (see `_dnsresolver`).
- A new config: `update(new)` carries health and DNS state over (`carry_over`), resolves the
  hostnames still unknown, then restarts the loops on the new balancers. Call it (or `start`)
  before the new runtime serves, so hostname targets already have addresses.
"""
from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from typing import Any, Awaitable, Callable, Iterable

from ._balancer import Balancer
from ._dns import Resolver, as_answer, getaddrinfo_resolver
from ._peer import Address, Target
from ._probe import probe, probe_ssl_context
from ._report import balancer_health_document, health_document

log = logging.getLogger("meshway.balancer")


async def run_bounded(items: Iterable[Any], limit: int, work: Callable[[Any], Awaitable]) -> None:
    """`work(item)` for every item, at most `limit` at a time, without a task per item."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await work(item)

    await asyncio.gather(*(worker() for _ in range(limit)))


def carry_over(new: dict[str, Balancer], old: dict[str, Balancer]) -> None:
    """Give the new config's balancers the health and DNS state of targets that still exist."""
    for name, balancer in new.items():
        if name in old:
            balancer.adopt(old[name])


def _resolver_on_first_use(settings: Any) -> Resolver:
    """`_dnsresolver.resolver_for_settings(settings)`, made on the first hostname to resolve: a
    config whose targets are all IP addresses never imports the DNS client (dnslib) nor reads
    resolv.conf, so a node starts sooner."""
    real: list[Resolver] = []

    async def resolve(host: str, port: int) -> Any:
        if not real:
            from ._dnsresolver import resolver_for_settings

            real.append(resolver_for_settings(settings))
        return await real[0](host, port)

    return resolve


def _pending(balancers: dict[str, Balancer], ttl: float, now: float) -> list[tuple[Balancer, Target]]:
    return [(b, t) for b in balancers.values() for t in b.targets
            if not t.is_ip and (not t.resolved_at or now - t.resolved_at >= (t.ttl or ttl))]


class HealthChecker:
    """Runs active checks and DNS refresh, and answers the health Admin API, for one runtime."""

    def __init__(self, *, node_id: str | None = None, dns_ttl: float = 30.0,
                 dns_family: int = socket.AF_INET, resolver: Resolver | None = None,
                 cafile: str | None = None) -> None:
        self.node_id = node_id
        self.dns_ttl = dns_ttl
        self._resolve = resolver or getaddrinfo_resolver(dns_family)
        self._cafile = cafile
        self._balancers: dict[str, Balancer] = {}
        self._tasks: list[asyncio.Task] = []

    @classmethod
    def for_settings(cls, settings: Any, node_id: str | None = None) -> HealthChecker:
        """A checker whose resolver follows the node's `dns_resolver` and `dns_order`."""
        return cls(node_id=node_id, resolver=_resolver_on_first_use(settings))

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, balancers: dict[str, Balancer]) -> None:
        """Resolve unknown hostnames, then run active checks and the DNS loop on `balancers`."""
        self._balancers = balancers
        await self.refresh_dns(only_unresolved=True)
        self._tasks = []
        if any(not t.is_ip for b in balancers.values() for t in b.targets):
            self._tasks.append(asyncio.create_task(self._dns_loop(), name="meshway-dns"))
        for balancer in balancers.values():
            self._tasks += self._active_tasks(balancer)

    async def update(self, balancers: dict[str, Balancer]) -> None:
        """Switch to a new config's balancers, carrying state over; checks restart staggered."""
        carry_over(balancers, self._balancers)
        await self.stop()
        await self.start(balancers)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- Admin API ----------------------------------------------------------------------------

    def health(self, upstream: str) -> dict[str, Any] | None:
        """`GET /upstreams/{upstream}/health` body, or None for an unknown upstream."""
        balancer = self._balancers.get(upstream)
        return None if balancer is None else health_document(balancer, self.node_id)

    def balancer_health(self, upstream: str) -> dict[str, Any] | None:
        """`GET /upstreams/{upstream}/health?balancer_health=1` body, or None."""
        balancer = self._balancers.get(upstream)
        return None if balancer is None else balancer_health_document(balancer, self.node_id)

    def set_health(self, upstream: str, target: str, healthy: bool,
                   address: str | None = None) -> bool:
        """`POST /upstreams/{u}/targets/{t}[/{address}]/healthy|unhealthy`; False if unknown."""
        balancer = self._balancers.get(upstream)
        return balancer is not None and balancer.set_health(target, healthy, address)

    # -- DNS ------------------------------------------------------------------------------------

    async def refresh_dns(self, *, only_unresolved: bool = False) -> None:
        """Re-resolve hostname targets whose answer is older than its TTL (or never came)."""
        now = time.monotonic()
        pending = _pending(self._balancers, self.dns_ttl, now)
        if only_unresolved:
            pending = [(b, t) for b, t in pending if not t.resolved_at]

        async def resolve(item: tuple[Balancer, Target]) -> None:
            balancer, target = item
            answer = as_answer(await self._resolve(target.hostname, target.port))
            balancer.set_target_answer(target, answer, time.monotonic())

        await run_bounded(pending, 16, resolve)

    async def _dns_loop(self) -> None:
        while True:
            await asyncio.sleep(min(self.dns_ttl, 1.0) * random.uniform(0.5, 1.0))
            try:
                await self.refresh_dns()
            except Exception:  # one bad answer must not end re-resolution for good
                log.exception("DNS refresh failed")

    # -- active checks --------------------------------------------------------------------------

    def _active_tasks(self, balancer: Balancer) -> list[asyncio.Task]:
        cfg = balancer.health_config
        if not cfg.active_on or not balancer.targets:
            return []
        limit = asyncio.Semaphore(cfg.concurrency)
        loops = [(True, cfg.healthy_interval), (False, cfg.unhealthy_interval)]
        return [asyncio.create_task(self._active_loop(balancer, healthy, every, limit),
                                    name=f"meshway-health-{balancer.name}")
                for healthy, every in loops if every > 0]

    async def _active_loop(self, balancer: Balancer, healthy: bool, every: float,
                           limit: asyncio.Semaphore) -> None:
        ctx = probe_ssl_context(balancer.health_config, self._cafile)
        await asyncio.sleep(random.uniform(0, every))
        while True:
            started = time.monotonic()
            chosen = [a for a in balancer.addresses if a.healthy == healthy and a.weight > 0]
            await run_bounded(chosen, balancer.health_config.concurrency,
                              lambda addr: self._check(balancer, addr, ctx, limit))
            await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))

    async def _check(self, balancer: Balancer, addr: Address, ctx, limit) -> None:
        async with limit:
            try:
                kind = await probe(addr.peer, balancer.health_config, ctx)
            except Exception:  # a bug in one probe must not stop the upstream's checks
                log.exception("health probe of %s failed", addr.peer.target)
                return
        if kind is not None:
            balancer.record_active(addr, kind)
