"""One upstream's balancer: targets, the selection algorithm, health state and hash keys.

Everything here runs on the event loop thread and never awaits: the proxy calls `select`,
`on_connect`, `on_release` and `report`; the `HealthChecker` feeds active-check outcomes and
DNS answers through `record_active` and `set_target_ips`.
"""
from __future__ import annotations

import time
from typing import Any

from ._algorithms import LeastConnections, Latency, RoundRobin, update_ewma
from ._dns import DnsAnswer, as_answer
from ._hashkey import compile_key
from ._health import TCP, TIMEOUT, HealthConfig, compile_health, record, set_healthy
from ._peer import Address, Peer, Target
from ._ring import Ring

_NO_EXCLUDE: frozenset = frozenset()
_ALGORITHMS = {"least-connections": LeastConnections, "latency": Latency}


class Balancer:
    """The compiled balancer of one upstream; `select` gives a healthy `Peer` or None."""

    def __init__(self, upstream: dict[str, Any], targets: list[dict[str, Any]]) -> None:
        self.name: str = upstream["name"]
        self.upstream = upstream
        self.algorithm: str = upstream.get("algorithm") or "round-robin"
        self.health_config: HealthConfig = compile_health(upstream.get("healthchecks"))
        self.targets: tuple[Target, ...] = tuple(Target(t) for t in _unique(targets))
        self._by_name = {t.name: t for t in self.targets}
        self._key = compile_key(upstream)
        self._ring = Ring(int(upstream.get("slots") or 10000)) if self._key else None
        self._algo = _ALGORITHMS.get(self.algorithm, RoundRobin)()
        self._touch = getattr(self._algo, "touch", None)
        self._passive = self.health_config.passive
        self._passive_on = self._passive.marks_unhealthy or self._passive.successes > 0
        # Whether `on_connect`/`on_release`/`report` of a request's success have anything to do:
        # connection counts (least-connections), the latency EWMA (latency) or passive health
        # checks. Fixed by the config: without any, the proxy skips the calls per request.
        self.tracked = self._touch is not None or isinstance(self._algo, Latency) or self._passive_on
        self._addresses: dict[Peer, Address] = {}
        self._usable = False
        self._addresses_changed()

    # -- hot path ---------------------------------------------------------------------------

    def select(self, request: Any = None, *, exclude: frozenset = _NO_EXCLUDE) -> Peer | None:
        """A peer for this request, skipping `exclude` (peers a retry already tried)."""
        if not self._usable:
            return None
        if self._key is not None and request is not None:
            key = self._key(request)
            if key is not None:
                addr = self._ring.pick(key, exclude)
                return None if addr is None else addr.peer
        addr = self._algo.pick(None, exclude)
        return None if addr is None else addr.peer

    def on_connect(self, peer: Peer) -> None:
        """A request to `peer` started (least-connections bookkeeping)."""
        addr = self._addresses.get(peer)
        if addr is not None:
            addr.conns += 1
            if self._touch is not None:
                self._touch(addr)

    def on_release(self, peer: Peer) -> None:
        """A request to `peer` ended, whatever its outcome."""
        addr = self._addresses.get(peer)
        if addr is not None and addr.conns > 0:
            addr.conns -= 1
            if self._touch is not None:
                self._touch(addr)

    def report(self, peer: Peer, *, status: int | None = None, tcp_failure: bool = False,
               timeout: bool = False, latency_ms: float | None = None) -> None:
        """Outcome of real traffic: feeds passive health checks and the latency EWMA."""
        addr = self._addresses.get(peer)
        if addr is None:
            return
        if latency_ms is not None:
            update_ewma(addr, latency_ms, time.monotonic())
        if self._passive_on:
            kind = _outcome(self._passive, status, tcp_failure, timeout)
            if kind is not None and record(addr, self._passive, kind):
                self._health_changed()

    # -- health and DNS, off the hot path ---------------------------------------------------

    @property
    def addresses(self) -> list[Address]:
        return [a for t in self.targets for a in t.addresses]

    @property
    def peers(self) -> list[Peer]:
        """Every peer of weight > 0, healthy or not."""
        return [a.peer for a in self.addresses if a.weight > 0]

    @property
    def needs_request(self) -> bool:
        """True when `select` reads the request (consistent hashing): pass a context then."""
        return self._key is not None

    def connections(self, peer: Peer) -> int:
        addr = self._addresses.get(peer)
        return 0 if addr is None else addr.conns

    def target(self, name: str) -> Target | None:
        return self._by_name.get(name)

    def record_active(self, addr: Address, kind: str) -> None:
        """Outcome of one active probe of `addr`."""
        if record(addr, self.health_config.active, kind):
            self._health_changed()

    def set_health(self, target: str, healthy: bool, address: str | None = None) -> bool:
        """Operator override for every address of a target (or one `ip:port`); False if unknown."""
        found = self._by_name.get(target)
        if found is None:
            return False
        chosen = [a for a in found.addresses if address in (None, f"{a.peer.host}:{a.peer.port}")]
        for addr in chosen:
            set_healthy(addr, healthy)
        self._health_changed()
        return bool(chosen) or address is None

    def set_target_ips(self, target: Target, ips: list[str], now: float) -> None:
        """A DNS answer of plain ips (A records) for a hostname target."""
        self.set_target_answer(target, as_answer(ips), now)

    def set_target_answer(self, target: Target, answer: DnsAnswer, now: float) -> None:
        """A DNS answer for a hostname target; keeps state of the ip:ports it already had."""
        target.resolved_at = now
        if not answer.endpoints and target.addresses:
            return  # keep serving the last good answer rather than nothing (stale DNS)
        target.answer = answer
        before = target.endpoints()
        target.set_endpoints(answer.endpoints)
        if target.endpoints() != before:
            self._addresses_changed()

    def adopt(self, old: Balancer) -> None:
        """Carry DNS answers and health state over from the previous config's balancer."""
        for target in self.targets:
            before = old.target(target.name)
            if before is not None and before.port == target.port:
                _carry_target(target, before)
        self._addresses_changed()

    @property
    def healthy(self) -> bool:
        """False when the available weight is under `healthchecks.threshold` (or is 0)."""
        return self._usable

    def _addresses_changed(self) -> None:
        self._addresses = {a.peer: a for a in self.addresses}
        if self._ring is not None:
            self._ring.rebuild([a for a in self._addresses.values() if a.weight > 0])
        self._health_changed()

    def _health_changed(self) -> None:
        weighted = [a for a in self._addresses.values() if a.weight > 0]
        self._algo.rebuild(weighted)
        total = sum(a.weight for a in weighted)
        up = sum(a.weight for a in weighted if a.healthy)
        self._usable = up > 0 and up * 100 >= total * self.health_config.threshold
        # The peer every request gets while one address is available and the balancer is usable
        # (round-robin over one): the proxy takes it without a `select` call; None otherwise
        healthy = [a for a in weighted if a.healthy]
        self.only = healthy[0].peer if self._usable and len(healthy) == 1 and self._key is None \
            and isinstance(self._algo, RoundRobin) else None


def _outcome(rules, status: int | None, tcp_failure: bool, timeout: bool) -> str | None:
    if tcp_failure:
        return TCP
    if timeout:
        return TIMEOUT
    return None if status is None else rules.classify(status)


def _carry_target(target: Target, before: Target) -> None:
    if not target.is_ip and before.answer is not None:
        target.set_endpoints(before.answer.endpoints)
        target.answer, target.resolved_at = before.answer, before.resolved_at
    old = {(a.peer.host, a.peer.port): a for a in before.addresses}
    for addr in target.addresses:
        key = (addr.peer.host, addr.peer.port)
        if key in old:
            addr.copy_state_from(old[key])


def _unique(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # One entry per target string, the last one winning, as Kong's unique (upstream, target).
    return list({t["target"]: t for t in targets}.values())

