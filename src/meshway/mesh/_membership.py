"""Mesh membership: which destinations are fronted by a sidecar, as pure values.

Rules:
- A data plane declares what it fronts with `mesh_inbound` (comma list of `ip`, `ip:port`,
  `[v6]:port` or a CIDR); when unset, the destinations on the left of its `origins`.
- It sends that list in its cluster `hello`; the control plane adds every connected sidecar's
  entries, with its node id, to the snapshot it pushes as a top-level `mesh` section
  (`{"endpoints": [{"node_id", "inbound"}]}`) and derives a new hash from the snapshot hash
  and the section, so a join or a leave that changes the section is pushed like any change.
- A sender upgrades a hop when its (ip, port) is fronted by *another* node: its own entries
  (and its own node id's) never count, so a sidecar reaches its local service in the clear.
- Lookup is O(1) for `ip` and `ip:port` entries; CIDR entries are checked one by one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
from typing import Any, Iterable

MAX_INBOUND = 256  # entries one data plane may declare; more is a protocol error


class InboundError(ValueError):
    """A `mesh_inbound` entry is malformed; the message names it."""


def _split(entry: str) -> tuple[str, int | None]:
    entry = entry.strip()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else _no_port(rest, entry)
    if entry.count(":") == 1:
        host, port = entry.split(":")
        if not port.isdigit():
            raise InboundError(f"mesh_inbound: invalid port in {entry!r}")
        return host, int(port)
    return entry, None


def _no_port(rest: str, entry: str) -> None:
    if rest:
        raise InboundError(f"mesh_inbound: invalid entry {entry!r}")
    return None


def normalize_entry(entry: str) -> str:
    """One entry in canonical form (`10.0.0.5`, `10.0.0.5:80`, `10.0.0.0/8`, `[::1]:80`)."""
    host, port = _split(entry)
    if port is not None and not 0 < port < 65536:
        raise InboundError(f"mesh_inbound: port out of range in {entry!r}")
    if "/" in host and port is not None:
        raise InboundError(f"mesh_inbound: a network takes no port ({entry!r})")
    try:
        if "/" in host:
            return str(ipaddress.ip_network(host, strict=False))
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise InboundError(f"mesh_inbound: {entry!r} is not an ip, ip:port or network") from None
    if port is None:
        return str(ip)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def inbound_entries(mesh_inbound: Iterable[str], origins: Iterable[tuple[str, str]] = ()) -> tuple[str, ...]:
    """What this sidecar fronts: `mesh_inbound`, else the left side of each `origins` pair."""
    items = list(mesh_inbound or ())
    if not items:
        items = [src.partition("://")[2] for src, _ in origins or ()]
    out = []
    for item in items:
        try:
            out.append(normalize_entry(item))
        except InboundError:
            if mesh_inbound:
                raise
    return tuple(dict.fromkeys(out))


def check_inbound(value: Any) -> tuple[str, ...]:
    """A hello's `mesh_inbound` field, checked: InboundError unless a short list of valid entries."""
    if not isinstance(value, list) or len(value) > MAX_INBOUND or not all(isinstance(v, str) for v in value):
        raise InboundError(f"mesh_inbound must be a list of at most {MAX_INBOUND} strings")
    return tuple(normalize_entry(v) for v in value)


def mesh_section(members: dict[str, tuple[str, ...]]) -> dict[str, Any] | None:
    """The snapshot's `mesh` section for {node_id: inbound}; None when nobody fronts anything."""
    endpoints = [{"node_id": node, "inbound": list(inbound)} for node, inbound in sorted(members.items()) if inbound]
    return {"endpoints": endpoints} if endpoints else None


def with_mesh(snapshot: dict[str, Any], config_hash: str, section: dict[str, Any] | None) -> tuple[dict, str]:
    """(snapshot + mesh section, derived hash); unchanged when there is no section."""
    if section is None:
        return snapshot, config_hash
    canonical = json.dumps(section, sort_keys=True, separators=(",", ":"))
    derived = hashlib.md5(f"{config_hash}:{canonical}".encode()).hexdigest()
    return {**snapshot, "mesh": section}, derived


@dataclasses.dataclass(frozen=True)
class MeshEndpoints:
    """Destinations fronted by other sidecars: `contains(ip, port)` answers whether a hop is mesh."""

    addresses: frozenset[tuple[str, int]]
    hosts: frozenset[str]
    networks: tuple[Any, ...]

    def contains(self, ip: str, port: int) -> bool:
        if (ip, port) in self.addresses or ip in self.hosts:
            return True
        if not self.networks:
            return False
        try:
            parsed = ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            return False
        return any(parsed in net for net in self.networks)

    def has_ip(self, ip: str) -> bool:
        """Whether any entry covers this IP (on any port)."""
        if ip in self.hosts or any(a == ip for a, _ in self.addresses):
            return True
        return self.contains(ip, -1) if self.networks else False

    def __bool__(self) -> bool:
        return bool(self.addresses or self.hosts or self.networks)


NO_ENDPOINTS = MeshEndpoints(frozenset(), frozenset(), ())


def compile_endpoints(entries: Iterable[str]) -> MeshEndpoints:
    """A lookup over canonical entries (see `normalize_entry`)."""
    addresses, hosts, networks = set(), set(), []
    for entry in entries:
        host, port = _split(entry)
        if "/" in host:
            networks.append(ipaddress.ip_network(host, strict=False))
        elif port is None:
            hosts.add(host)
        else:
            addresses.add((host, port))
    return MeshEndpoints(frozenset(addresses), frozenset(hosts), tuple(networks))


def remote_endpoints(section: dict[str, Any] | None, own_node: str | None, own: Iterable[str]) -> MeshEndpoints:
    """Endpoints of a snapshot's `mesh` section fronted by other nodes than this one."""
    mine = set(own)
    entries = []
    for item in (section or {}).get("endpoints") or ():
        if item.get("node_id") == own_node:
            continue
        entries += [normalize_entry(e) for e in item.get("inbound") or () if normalize_entry(e) not in mine]
    return compile_endpoints(entries)
