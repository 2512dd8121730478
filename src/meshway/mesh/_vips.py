"""Virtual IPs for `<service>.mesh` names, as Kuma's DNS server allocates them.

Rules:
- One VIP per `kuma.io/service` per mesh, from the mesh CIDR (Kuma's default `240.0.0.0/4`,
  reserved and never routed), lowest free address first, the network address skipped.
- A reservation is sticky: it is persisted with the mesh (the store's `VirtualIPs` resource)
  and kept when the service's last data plane leaves, so a data plane restart, or a control
  plane restart, gives the service the same address (Kuma frees it; a client that cached the
  old answer for its 60 s TTL would then reach another service). The *name* resolves only
  while some data plane provides the service (`visible`), as in Kuma.
- Reservations outside the CIDR (after a CIDR change) are dropped and re-allocated.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

CIDR = "240.0.0.0/4"
VIP_PORT = 80  # Kuma's serviceVipPort: the one port a kuma.io/service VIP listens on
TTL = 60
DOMAIN = "mesh"


class VipExhausted(RuntimeError):
    """No free address left in the mesh CIDR."""


def allocate(current: dict[str, str], services: Iterable[str], cidr: str = CIDR) -> dict[str, str]:
    """`current` plus a VIP for every service that has none (a new dict; `current` is untouched)."""
    net = ipaddress.ip_network(cidr)
    out = {s: ip for s, ip in current.items() if _inside(ip, net)}
    taken = {ipaddress.ip_address(ip) for ip in out.values()}
    wanted = [s for s in dict.fromkeys(services) if s and s not in out]
    if not wanted:
        return out
    candidate = int(net.network_address) + 1
    last = int(net.broadcast_address)
    for service in wanted:
        while ipaddress.ip_address(candidate) in taken:
            candidate += 1
        if candidate >= last:
            raise VipExhausted(f"no virtual IP left in {cidr} for service {service!r}")
        out[service] = str(ipaddress.ip_address(candidate))
        taken.add(ipaddress.ip_address(candidate))
    return out


def _inside(ip: str, net) -> bool:
    try:
        return ipaddress.ip_address(ip) in net
    except ValueError:
        return False


def visible(reserved: dict[str, str], present: Iterable[str]) -> dict[str, str]:
    """The reservations whose service some data plane provides right now."""
    present = set(present)
    return {s: ip for s, ip in sorted(reserved.items()) if s in present}


def hostnames(service: str, domain: str = DOMAIN) -> list[str]:
    """`<service>.mesh` and, when different, the RFC 1035 form with `_` as `.` (kuma PR #1485)."""
    names = [f"{service}.{domain}".lower()]
    dotted = f"{service.replace('_', '.')}.{domain}".lower()
    if dotted != names[0]:
        names.append(dotted)
    return names


def dns_table(vips: dict[str, dict[str, str]], domain: str = DOMAIN) -> dict[str, str]:
    """{fqdn (lower case, no trailing dot): ip} for every visible VIP of every mesh."""
    table: dict[str, str] = {}
    for _mesh, services in sorted(vips.items()):
        for service, ip in services.items():
            for name in hostnames(service, domain):
                table.setdefault(name, ip)
    return table
