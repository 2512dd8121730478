"""Resolving hostname targets without blocking the loop: getaddrinfo in the executor.

The stdlib gives no record TTL, so answers are kept for a fixed `dns_ttl` (a HealthChecker
setting). IPv4 only by default, as Kong's default `dns_order` (LAST,SRV,A,CNAME) asks no AAAA.
"""
from __future__ import annotations

import asyncio
import socket
from typing import Awaitable, Callable

Resolver = Callable[[str, int], Awaitable[list[str]]]


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
