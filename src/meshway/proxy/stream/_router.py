"""The stream router: which route serves a connection, and whether to wait for client bytes.

Rules (Kong's stream router, kept):
- A route matches on `sources` / `destinations` (each entry an IP, a CIDR, a port, or both; a
  list matches when any entry does) and `snis`; an empty field matches anything.
- Priority: routes using more kinds of fields win; among equal counts SNI > SRC > DST
  (so SNI+SRC+DST, SNI+SRC, SNI+DST, SRC+DST, SNI, SRC, DST); then a route with an entry
  giving both ip and port; then the older `created_at`; then snapshot order.
- A route's `protocols` say which connections it takes: `tcp` takes plain clients (and TLS
  clients, forwarded raw, when no TLS route takes them); `tls` terminates TLS;
  `tls_passthrough` forwards TLS untouched. TLS clients try TLS routes first.
- SNIs match exactly or by a leading `*.` wildcard (`*.example.com` takes `a.example.com`).

Theory of operation: at accept time only addresses are known. `plan_connection` keeps the
routes whose addresses match; if none of them needs the ClientHello (no SNI rule, and not a
mix of TLS and TCP routes) the first one wins and the upstream is dialled at once, so
server-speaks-first protocols work. Otherwise the session prereads and calls `choose_route`.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Callable, Iterable

from ._clienthello import HelloStatus, Preread, normalize_sni

TCP, TLS, PASSTHROUGH = "tcp", "tls", "tls_passthrough"
STREAM_PROTOCOLS = frozenset({TCP, TLS, PASSTHROUGH, "udp"})
_TLS_KINDS = frozenset({TLS, PASSTHROUGH})
_SNI_BIT, _SRC_BIT, _DST_BIT = 4, 2, 1


@dataclasses.dataclass(frozen=True)
class AddressRule:
    """One `sources`/`destinations` entry: an exact IP or a network, and/or a port."""

    ip: str | None
    network: Any | None
    port: int | None

    def matches(self, ip: str, parsed: Any, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return parsed is not None and parsed in self.network
        return self.ip is None or self.ip == ip


class ConnectionFacts:
    """The addresses of one connection; IPs are parsed only if a CIDR rule asks."""

    __slots__ = ("src_ip", "src_port", "dst_ip", "dst_port", "_parsed")

    def __init__(self, src_ip: str, src_port: int, dst_ip: str, dst_port: int) -> None:
        self.src_ip, self.src_port, self.dst_ip, self.dst_port = src_ip, src_port, dst_ip, dst_port
        self._parsed: dict[str, Any] = {}

    def parsed(self, ip: str) -> Any:
        if ip not in self._parsed:
            try:
                self._parsed[ip] = ipaddress.ip_address(ip)
            except ValueError:
                self._parsed[ip] = None
        return self._parsed[ip]


@dataclasses.dataclass(frozen=True)
class StreamRoute:
    """A compiled stream route; `service` is the compiled service or None."""

    id: str
    name: str | None
    protocols: frozenset[str]
    sources: tuple[AddressRule, ...]
    destinations: tuple[AddressRule, ...]
    snis: frozenset[str]
    sni_suffixes: tuple[str, ...]
    service: Any
    priority: tuple = dataclasses.field(compare=False, repr=False, default=())
    plugins: Any = dataclasses.field(compare=False, repr=False, default=None)  # `_plugins.StreamPlugins` or None

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def has_sni_rule(self) -> bool:
        return bool(self.snis or self.sni_suffixes)

    @property
    def takes_tls(self) -> bool:
        return not self.protocols.isdisjoint(_TLS_KINDS)

    @property
    def takes_tcp(self) -> bool:
        return TCP in self.protocols

    def matches_addresses(self, facts: ConnectionFacts) -> bool:
        return _any_rule(self.sources, facts, facts.src_ip, facts.src_port) and _any_rule(
            self.destinations, facts, facts.dst_ip, facts.dst_port
        )

    def matches_sni(self, sni: str | None) -> bool:
        if not self.has_sni_rule:
            return True
        if sni is None:
            return False
        return sni in self.snis or any(sni.endswith(s) and len(sni) > len(s) for s in self.sni_suffixes)

    def mode_for(self, client_speaks_tls: bool) -> str:
        """`terminate`, `passthrough` or `raw`: what the proxy does with the client's bytes."""
        if client_speaks_tls and TLS in self.protocols:
            return "terminate"
        if client_speaks_tls and PASSTHROUGH in self.protocols:
            return "passthrough"
        return "raw"


def _any_rule(rules: tuple[AddressRule, ...], facts: ConnectionFacts, ip: str, port: int) -> bool:
    if not rules:
        return True
    parsed = facts.parsed(ip) if any(r.network is not None for r in rules) else None
    return any(r.matches(ip, parsed, port) for r in rules)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do with a fresh connection: a route now, preread first, or no route."""

    route: StreamRoute | None
    preread: bool
    candidates: tuple[StreamRoute, ...]


@dataclasses.dataclass(frozen=True)
class StreamRouter:
    """Stream routes in priority order."""

    routes: tuple[StreamRoute, ...]

    def candidates(self, facts: ConnectionFacts) -> tuple[StreamRoute, ...]:
        return tuple(r for r in self.routes if r.matches_addresses(facts))


def plan_connection(router: StreamRouter, facts: ConnectionFacts, tls_only: bool = False) -> Plan:
    """Decide at accept time; `tls_only` is an `ssl` listener (every client must speak TLS)."""
    found = router.candidates(facts)
    if tls_only:
        found = tuple(r for r in found if r.takes_tls)
    if not found:
        return Plan(None, False, ())
    if needs_preread(found):
        return Plan(None, True, found)
    return Plan(found[0], False, found)


def needs_preread(candidates: Iterable[StreamRoute]) -> bool:
    """True when the ClientHello could change the choice between these routes."""
    tls = tcp = False
    for route in candidates:
        if route.has_sni_rule:
            return True
        tls = tls or route.takes_tls
        tcp = tcp or route.takes_tcp
    return tls and tcp


def choose_route(candidates: tuple[StreamRoute, ...], seen: Preread, tls_only: bool = False) -> StreamRoute | None:
    """The winning route once the first client bytes (or their absence) are known."""
    if seen.status is HelloStatus.TLS:
        for route in candidates:
            if route.takes_tls and route.matches_sni(seen.sni):
                return route
        if tls_only:
            return None
    elif tls_only:
        return None
    return next((r for r in candidates if r.takes_tcp), None)


def choose_mesh_route(candidates: tuple[StreamRoute, ...]) -> StreamRoute | None:
    """The route for a decrypted mesh connection: the first (by priority) that takes its
    destination without needing the original client's SNI, which the mesh hop replaced."""
    return next((r for r in candidates if not r.has_sni_rule and (r.takes_tls or r.takes_tcp)), None)


# ---- compiling route entities ------------------------------------------------------------


def compile_routes(routes: list[dict], services: dict[str, Any], udp: bool = False,
                   plugins: Callable[[dict], Any] | None = None) -> StreamRouter:
    """Stream routes of a snapshot, sorted: those with a tcp/tls/tls_passthrough protocol, or with
    `udp` when `udp` (the router of the datagram listeners, which match on addresses only).
    `plugins(route entity)`: the route's compiled stream plugins (or None)."""
    wanted = frozenset({"udp"}) if udp else STREAM_PROTOCOLS - {"udp"}
    compiled = [
        _compile_route(entity, services, index, plugins)
        for index, entity in enumerate(routes)
        if not wanted.isdisjoint(entity.get("protocols") or ())
    ]
    compiled.sort(key=lambda r: r.priority)
    return StreamRouter(tuple(compiled))


def _compile_route(entity: dict, services: dict[str, Any], index: int,
                   plugins: Callable[[dict], Any] | None = None) -> StreamRoute:
    sources = tuple(_address_rule(e, entity, "sources") for e in entity.get("sources") or ())
    destinations = tuple(_address_rule(e, entity, "destinations") for e in entity.get("destinations") or ())
    snis, suffixes = _sni_rules(entity)
    service_ref = entity.get("service") or {}
    service = services.get(service_ref.get("id")) if service_ref else None
    if service_ref and service is None:
        raise ValueError(f"route {_label(entity)}: service {service_ref.get('id')} does not exist")
    route = StreamRoute(
        id=entity["id"], name=entity.get("name"),
        protocols=frozenset(entity.get("protocols") or ()) & STREAM_PROTOCOLS,
        sources=sources, destinations=destinations, snis=snis, sni_suffixes=suffixes, service=service,
        plugins=plugins(entity) if plugins is not None else None,
    )
    return dataclasses.replace(route, priority=_priority(route, entity, index))


def _label(entity: dict) -> str:
    return entity.get("name") or entity.get("id") or "?"


def _address_rule(entry: dict, entity: dict, field: str) -> AddressRule:
    ip, port = entry.get("ip"), entry.get("port")
    if port is not None and not (isinstance(port, int) and 0 < port < 65536):
        raise ValueError(f"route {_label(entity)}: {field}: invalid port {port!r}")
    if ip is None:
        return AddressRule(None, None, port)
    try:
        if "/" in ip:
            network = ipaddress.ip_network(ip, strict=False)
            return AddressRule(str(network), network, port)
        return AddressRule(str(ipaddress.ip_address(ip)), None, port)
    except ValueError:
        raise ValueError(f"route {_label(entity)}: {field}: invalid ip {ip!r}") from None


def _sni_rules(entity: dict) -> tuple[frozenset[str], tuple[str, ...]]:
    exact, suffixes = set(), []
    for raw in entity.get("snis") or ():
        name = normalize_sni(raw)
        if name is None:
            raise ValueError(f"route {_label(entity)}: snis: invalid name {raw!r}")
        if name.startswith("*."):
            suffixes.append(name[1:])
        else:
            exact.add(name)
    return frozenset(exact), tuple(suffixes)


def _priority(route: StreamRoute, entity: dict, index: int) -> tuple:
    bits = (_SNI_BIT if route.has_sni_rule else 0) | (_SRC_BIT if route.sources else 0) | (
        _DST_BIT if route.destinations else 0
    )
    ip_and_port = any(r.ip is not None and r.port is not None for r in route.sources + route.destinations)
    created = entity.get("created_at") or 0
    return (-bin(bits).count("1"), -bits, not ip_and_port, created, index)
