"""Selection algorithms: weighted round-robin, least-connections and latency (EWMA).

Every algorithm gets `rebuild(addresses)` (all addresses of weight > 0, healthy or not) at
compile time and whenever health or DNS changes, and answers `pick(key, exclude)` on the hot
path. Health changes are rare, so each algorithm precomputes a structure of the *available*
addresses and `pick` is O(1) (round-robin, latency) or O(log n) amortised (least-connections).
`exclude` holds the peers a retry already tried; it is small and only walks further on retries.
"""
from __future__ import annotations

import heapq
import math
import random
import time
from functools import reduce
from itertools import count
from typing import TYPE_CHECKING

from ._peer import Address

if TYPE_CHECKING:
    from fractions import Fraction

MAX_WHEEL = 1 << 16  # beyond this many slots, weights are rounded to fit (documented)
DECAY_SECONDS = 10.0  # latency EWMA half-life-ish, as Kong's latency balancer


def wheel_points(weights: list[Fraction]) -> list[int]:
    """Smallest integer slot counts with exactly the ratios of `weights` (capped at MAX_WHEEL)."""
    if not weights:
        return []
    lcm = reduce(math.lcm, (w.denominator for w in weights), 1)
    points = [int(w * lcm) for w in weights]
    divisor = reduce(math.gcd, points)
    points = [p // divisor for p in points]
    total = sum(points)
    if total > MAX_WHEEL:
        points = [max(1, p * MAX_WHEEL // total) for p in points]
    return points


def interleaved_wheel(addresses: list[Address]) -> list[Address]:
    """Each address `points` times, spread evenly (stride order), so short runs stay fair."""
    points = wheel_points([a.weight for a in addresses])
    slots = [((k + 0.5) / p, i) for i, p in enumerate(points) for k in range(p)]
    slots.sort()
    return [addresses[i] for _, i in slots]


class RoundRobin:
    """Weighted round-robin over a precomputed wheel of the available addresses."""

    __slots__ = ("_wheel", "_next")

    def __init__(self) -> None:
        self._wheel: list[Address] = []
        self._next = 0

    def rebuild(self, addresses: list[Address]) -> None:
        self._wheel = interleaved_wheel([a for a in addresses if a.healthy])
        # Start each process at a random slot so workers do not hit the same peer in step.
        self._next = random.randrange(len(self._wheel)) if self._wheel else 0

    def pick(self, key: str | None, exclude: frozenset) -> Address | None:
        wheel = self._wheel
        if not wheel:
            return None
        i = self._next % len(wheel)
        self._next = i + 1
        addr = wheel[i]
        if exclude and addr.peer in exclude:
            return self._pick_excluding(i, exclude)
        return addr

    def _pick_excluding(self, start: int, exclude: frozenset) -> Address | None:
        wheel, n = self._wheel, len(self._wheel)
        for step in range(1, n):
            addr = wheel[(start + step) % n]
            if addr.peer not in exclude:
                self._next = start + step + 1
                return addr
        return None


def _load(addr: Address) -> float:
    return (addr.conns + 1) / addr.fweight


class LeastConnections:
    """Lowest (connections + 1) / weight wins; a lazy heap re-keyed on every connect/release."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Address]] = []
        self._live: list[Address] = []
        self._seq = count(1)

    def rebuild(self, addresses: list[Address]) -> None:
        self._live = [a for a in addresses if a.healthy]
        self._heap = []
        for addr in self._live:
            self._push(addr)

    def _push(self, addr: Address) -> None:
        # Ties go to the address re-keyed longest ago, which spreads equal loads in turn.
        addr.stamp = next(self._seq)
        heapq.heappush(self._heap, (_load(addr), addr.stamp, addr))

    def touch(self, addr: Address) -> None:
        """Its connection count changed: push its new key; stale entries are skipped later."""
        if not addr.healthy:
            return
        self._push(addr)
        if len(self._heap) > 4 * len(self._live) + 64:
            # Drop stale entries but keep stamps, so the turn order of equal loads survives.
            self._heap = [e for e in self._heap if e[1] == e[2].stamp]
            heapq.heapify(self._heap)

    def pick(self, key: str | None, exclude: frozenset) -> Address | None:
        heap = self._heap
        while heap and heap[0][1] != heap[0][2].stamp:
            heapq.heappop(heap)
        if not heap:
            return None
        addr = heap[0][2]
        if exclude and addr.peer in exclude:
            return min((a for a in self._live if a.peer not in exclude), key=_load, default=None)
        self.touch(addr)  # re-queue behind its equals, so ties take turns until connects land
        return addr


def decayed(addr: Address, now: float) -> float:
    """The address's latency EWMA, decayed towards 0 while it is not used (so it is retried)."""
    if addr.ewma is None:
        return 0.0
    return addr.ewma * math.exp(-max(0.0, now - addr.touched) / DECAY_SECONDS)


def update_ewma(addr: Address, latency_ms: float, now: float) -> None:
    if addr.ewma is None:
        addr.ewma = latency_ms
    else:
        keep = math.exp(-max(0.0, now - addr.touched) / DECAY_SECONDS)
        addr.ewma = addr.ewma * keep + latency_ms * (1.0 - keep)
    addr.touched = now


class Latency:
    """Power of two choices on EWMA latency / weight, as Kong's `latency` algorithm."""

    __slots__ = ("_live", "clock")

    def __init__(self, clock=time.monotonic) -> None:
        self._live: list[Address] = []
        self.clock = clock

    def rebuild(self, addresses: list[Address]) -> None:
        self._live = [a for a in addresses if a.healthy]
        known = [a.ewma for a in self._live if a.ewma is not None]
        # Slow start: a new address starts at the average, not at 0, or it would get everything.
        if known:
            for addr in self._live:
                if addr.ewma is None:
                    addr.ewma, addr.touched = sum(known) / len(known), self.clock()

    def pick(self, key: str | None, exclude: frozenset) -> Address | None:
        live = [a for a in self._live if a.peer not in exclude] if exclude else self._live
        n = len(live)
        if n < 2:
            return live[0] if live else None
        i = random.randrange(n)
        j = random.randrange(n - 1)
        first, second = live[i], live[j + (j >= i)]
        now = self.clock()
        if decayed(second, now) / second.fweight < decayed(first, now) / first.fweight:
            return second
        return first
