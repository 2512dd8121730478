"""The consistent-hashing ring (Ketama, as Kong's `consistent-hashing` algorithm).

Theory of operation:
- Each address of weight > 0 owns points on a 32-bit circle at md5("ip:port i"), i = 1..n.
  A key hashes onto the circle and belongs to the first point at or after it (wrapping).
- n is proportional to the address's share of the total weight: with equal weights every
  address gets 160 points, as Kong. `slots` caps the total number of points (Kong's continuum
  size), so 10,000 targets build a ring of 10,000 points, not 1.6 million.
- Stability: an address's points depend only on its ip, port and point count, never on the
  other addresses. Adding a target of the same weight therefore only adds points: the keys
  that move all move to the new target, and none move between old ones. (With unequal
  weights or once the `slots` cap binds, counts are rescaled and a few more keys move.)
- Health does not change the ring: a key whose address is unavailable walks on to the next
  point, so it comes back to its own address once that is healthy again.
"""
from __future__ import annotations

import bisect
from hashlib import md5

from ._peer import Address

POINTS_PER_ADDRESS = 160


def hash32(value: str) -> int:
    return int.from_bytes(md5(value.encode(), usedforsecurity=False).digest()[:4], "big")


def point_counts(addresses: list[Address], slots: int) -> list[int]:
    total = sum(a.weight for a in addresses)
    budget = min(POINTS_PER_ADDRESS * len(addresses), max(slots, len(addresses)))
    return [max(1, int(a.weight / total * budget)) for a in addresses]


class Ring:
    """Ketama ring over every address of weight > 0; `pick` is a bisect plus a short walk."""

    __slots__ = ("_slots", "_points", "_owners")

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._points: list[int] = []
        self._owners: list[Address] = []

    def rebuild(self, addresses: list[Address]) -> None:
        pairs = []
        # Sorted so that on a (rare) point collision the same address wins in every process.
        ordered = sorted(addresses, key=lambda a: (a.peer.host, a.peer.port))
        for addr, n in zip(ordered, point_counts(ordered, self._slots)):
            name = f"{addr.peer.host}:{addr.peer.port} "
            pairs.extend((hash32(name + str(i)), addr) for i in range(1, n + 1))
        pairs.sort(key=lambda pair: pair[0])
        self._points = [p for p, _ in pairs]
        self._owners = [a for _, a in pairs]

    def pick(self, key: str, exclude: frozenset) -> Address | None:
        owners = self._owners
        n = len(owners)
        start = bisect.bisect_left(self._points, hash32(key))
        for step in range(n):
            addr = owners[(start + step) % n]
            if addr.healthy and not (exclude and addr.peer in exclude):
                return addr
        return None
