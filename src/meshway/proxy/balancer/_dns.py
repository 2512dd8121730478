"""DNS answers for hostname targets, and the getaddrinfo resolver (no servers configured).

A resolver is `async (host, port) -> DnsAnswer | list[str]`; a plain list of ips (the
getaddrinfo resolver, test resolvers) means A-like endpoints with no TTL. `as_answer` turns
either into a `DnsAnswer`, the one shape the balancer takes.

Rules (Kong's, from its balancer's handling of SRV answers):
- An A/AAAA endpoint has no port and no weight: it gets the target's port and a share of the
  target's weight.
- An SRV endpoint carries its own port (0 means "use the target's port") and its own weight
  (0 becomes 1: "hit minimally", Kong's SRV_0_WEIGHT). Only the lowest priority value is used.
- `ttl` is the smallest record TTL of the answer, None when unknown or 0; the checker then
  uses `dns_ttl`. It is bounded below by `MIN_TTL` so a TTL of 0 cannot spin the refresh loop.

The getaddrinfo resolver: the stdlib gives no TTL, so its answers last `dns_ttl`. IPv4 only
by default, as Kong's default `dns_order` (LAST,SRV,A,CNAME) asks no AAAA.
"""
from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Union

MIN_TTL = 1.0
SRV_0_WEIGHT = 1


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """One resolved address; `port`/`weight` None mean the target's (A and AAAA records)."""

    ip: str
    port: int | None = None
    weight: int | None = None


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The endpoints one lookup gave (sorted, unique) and how long they may be kept."""

    endpoints: tuple[Endpoint, ...]
    ttl: float | None = None


Resolver = Callable[[str, int], Awaitable[Union[DnsAnswer, list]]]


def as_answer(result: DnsAnswer | Iterable[str]) -> DnsAnswer:
    """Normalise what a resolver returned."""
    if isinstance(result, DnsAnswer):
        return result
    return DnsAnswer(tuple(Endpoint(ip) for ip in sorted(set(result))))


def answer_ttl(ttls: Iterable[int]) -> float | None:
    """The TTL to keep an answer for: the smallest record TTL, None when absent or 0."""
    smallest = min(ttls, default=0)
    return None if smallest <= 0 else max(MIN_TTL, float(smallest))


def srv_endpoints(records: Iterable[tuple[int, int, int, str]],
                  ips: Callable[[str], list[str]]) -> tuple[Endpoint, ...]:
    """SRV (priority, weight, port, target host) records -> endpoints of the lowest priority."""
    records = list(records)
    if not records:
        return ()
    top = min(r[0] for r in records)
    found = {Endpoint(ip, port or None, weight or SRV_0_WEIGHT)
             for priority, weight, port, host in records if priority == top
             for ip in ips(host)}
    return tuple(sorted(found))


def getaddrinfo_resolver(family: int = socket.AF_INET, timeout: float = 5.0) -> Resolver:
    """A resolver: sorted unique ips of `host`, [] when it does not resolve in time."""
    async def resolve(host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM), timeout)
        except (OSError, asyncio.TimeoutError, UnicodeError):
            return []
        return sorted({info[4][0] for info in infos})
    return resolve
