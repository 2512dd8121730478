"""Peers, addresses and targets: the values a balancer hands out and the state behind them.

A *target* is what an operator configures (`10.0.0.1:80`, `api.internal:8080`). An *address*
is one ip:port it resolves to; it carries the mutable state (health counters, connections,
latency). A `Peer` is the immutable, hashable face of an address that the proxy receives: it
is built once per address, so `select()` allocates nothing.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from ._dns import DnsAnswer, Endpoint

if TYPE_CHECKING:  # imported where a weight is computed: fractions loads decimal (~0.45 MiB of a
    from fractions import Fraction  # worker's memory), and a config without upstreams never needs it

DEFAULT_TARGET_PORT = 8000


@dataclass(frozen=True, slots=True)
class Peer:
    """One ip:port of a target that a request can be sent to; `hostname` is for SNI and Host."""

    host: str
    port: int
    target: str
    hostname: str


class Address:
    """Mutable runtime state of one ip:port; owned by exactly one compiled balancer."""

    __slots__ = ("peer", "weight", "fweight", "healthy", "ok", "tcp", "timeouts", "http", "conns",
                 "ewma", "touched", "stamp")

    def __init__(self, peer: Peer, weight: Fraction) -> None:
        self.peer = peer
        self.weight = weight          # exact share of the target's weight
        self.fweight = float(weight)  # the same, for scores on the hot path
        self.healthy = True
        self.ok = self.tcp = self.timeouts = self.http = 0
        self.conns = 0
        self.ewma: float | None = None
        self.touched = 0.0
        self.stamp = 0

    @property
    def available(self) -> bool:
        return self.healthy and self.weight > 0

    def copy_state_from(self, old: Address) -> None:
        """Carry health counters and latency over from the same address in an older config."""
        self.healthy = old.healthy
        self.ok, self.tcp, self.timeouts, self.http = old.ok, old.tcp, old.timeouts, old.http
        self.ewma, self.touched = old.ewma, old.touched


class Target:
    """One configured target: its entity, its weight and the addresses it currently has."""

    __slots__ = ("entity", "name", "hostname", "port", "weight", "is_ip", "addresses",
                 "dns_error", "resolved_at", "answer")

    def __init__(self, entity: dict[str, Any]) -> None:
        self.entity = entity
        self.name = entity["target"]
        self.hostname, self.port = parse_target(self.name)
        self.weight = int(entity.get("weight", 100))
        self.is_ip = is_ip(self.hostname)
        self.addresses: tuple[Address, ...] = ()
        self.dns_error = False
        self.resolved_at = 0.0
        self.answer: DnsAnswer | None = None  # the last good DNS answer
        if self.is_ip:
            self.set_ips([self.hostname])

    @property
    def ttl(self) -> float | None:
        """How long the last answer lasts; None = the checker's `dns_ttl`."""
        return None if self.answer is None else self.answer.ttl

    def set_ips(self, ips: list[str]) -> None:
        """One address per ip, with the target's port, sharing its weight."""
        self.set_endpoints([Endpoint(ip) for ip in ips])

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """One address per ip:port (the first endpoint wins); keeps state of known ones.

        A/AAAA endpoints share the target's weight; SRV ones bring their port and weight. A
        target of weight 0 is disabled whatever DNS says.
        """
        from fractions import Fraction

        unique = {(e.ip, e.port or self.port): e for e in reversed(list(endpoints))}
        share = Fraction(self.weight, len(unique)) if unique else Fraction(0)
        old = {(a.peer.host, a.peer.port): a for a in self.addresses}
        self.addresses = tuple(self._address(key, self._weight(e, share), old.get(key))
                               for key, e in sorted(unique.items()))
        self.dns_error = not unique

    def endpoints(self) -> list[tuple[str, int, Fraction]]:
        """(ip, port, weight) of every address: what a new answer is compared with."""
        return [(a.peer.host, a.peer.port, a.weight) for a in self.addresses]

    def _weight(self, endpoint: Endpoint, share: Fraction) -> Fraction:
        if self.weight == 0 or endpoint.weight is None:
            return share
        from fractions import Fraction

        return Fraction(endpoint.weight)

    def _address(self, key: tuple[str, int], weight: Fraction, old: Address | None) -> Address:
        if old is not None and old.weight == weight:
            return old
        addr = Address(Peer(key[0], key[1], self.name, self.hostname), weight)
        if old is not None:
            addr.copy_state_from(old)
        return addr


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_target(target: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, bare host or bare IPv6 -> (host, port), Kong's port default 8000."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_TARGET_PORT
    if target.count(":") > 1:  # bare IPv6 literal
        return target, DEFAULT_TARGET_PORT
    host, sep, port = target.partition(":")
    return host, int(port) if sep else DEFAULT_TARGET_PORT
