"""Kong's hostname resolution for targets: hosts file, then `dns_order` against DNS servers.

Theory of operation, for one lookup of `host`:
1. A name in the hosts file (`dns_hostsfile`, /etc/hosts by default) answers from there
   (A/AAAA, the target's port), as Kong's DNS client does: `localhost` never reaches a DNS
   server.
2. Otherwise each record type of `dns_order` is asked in turn (`LAST` = the type that last
   gave endpoints for this name, skipped when none did yet). The first type with endpoints
   wins and becomes the name's LAST.
   - SRV: each record of the lowest priority becomes endpoints with its own port and weight;
     its target host is looked up in the additional section, else by a follow-up A query
     (the hosts file first). TTL = the smallest of the SRV and A TTLs used.
   - A / AAAA: ips with the target's port and weight.
   - CNAME: the alias's A records (one level).
3. NXDOMAIN (the name does not exist, for any type) or no server answering ends step 2 early.
4. When step 2 found nothing, getaddrinfo decides (nsswitch, search domains, the system's own
   resolver); its answers last `dns_ttl`. So the DNS servers refine, never break, what the
   system resolves.
`resolver_for_settings` builds this from `dns_resolver`/`dns_order`/`dns_hostsfile`; with no
`dns_resolver` the servers are /etc/resolv.conf's nameservers, and with none there it is the
hosts file then getaddrinfo (getaddrinfo alone when the hosts file is /etc/hosts).
"""
from __future__ import annotations

import asyncio
import os
import socket
from typing import Any, Iterable

from ._dns import DnsAnswer, Endpoint, Resolver, answer_ttl, getaddrinfo_resolver, srv_endpoints
from ._dnsclient import Reply, Server, query, records
from ._peer import is_ip

DEFAULT_ORDER = ("LAST", "SRV", "A", "CNAME")
RESOLV_CONF, HOSTS = "/etc/resolv.conf", "/etc/hosts"


def nameservers(path: str = RESOLV_CONF) -> list[Server]:
    """The `nameserver` lines of resolv.conf, port 53; [] when there are none."""
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return []
    words = [line.split() for line in lines]
    return [(w[1].split("%")[0], 53) for w in words if len(w) >= 2 and w[0] == "nameserver"]


class HostsFile:
    """/etc/hosts, re-read when its mtime changes."""

    def __init__(self, path: str = HOSTS) -> None:
        self.path = path
        self._mtime: float | None = None
        self._names: dict[str, list[str]] = {}

    def lookup(self, name: str, families: frozenset[int]) -> list[str]:
        self._reload()
        return [ip for ip in self._names.get(name.lower(), [])
                if (socket.AF_INET6 if ":" in ip else socket.AF_INET) in families]

    def _reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            self._names = {}
            return
        if mtime != self._mtime:
            self._mtime, self._names = mtime, _parse_hosts(open(self.path).read())


def _parse_hosts(text: str) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and is_ip(words[0]):
            for name in words[1:]:
                ips = names.setdefault(name.lower(), [])
                if words[0] not in ips:
                    ips.append(words[0])
    return names


class DnsResolver:
    """A `Resolver` that asks DNS servers by `dns_order` (see the module rules)."""

    def __init__(self, servers: list[Server], order: Iterable[str] = DEFAULT_ORDER, *,
                 timeout: float = 2.0, hosts: HostsFile | None = None) -> None:
        self.servers = list(servers)
        self.order = tuple(order)
        self.timeout = timeout
        self.hosts = hosts or HostsFile()
        self.families = frozenset({socket.AF_INET} | (
            {socket.AF_INET6} if "AAAA" in self.order else set()))
        family = socket.AF_UNSPEC if len(self.families) > 1 else socket.AF_INET
        self._fallback = getaddrinfo_resolver(family)
        self._last: dict[str, str] = {}

    async def __call__(self, host: str, port: int) -> DnsAnswer | list[str]:
        local = self.hosts.lookup(host, self.families)
        if local:
            return local
        for qtype in self.types(host):
            found = await self._lookup(host, qtype)
            if found is None:
                break
            if found.endpoints:
                self._last[host] = qtype
                return found
        return await self._fallback(host, port)

    def types(self, host: str) -> list[str]:
        """`dns_order` for `host`, LAST replaced by the name's last good type (or dropped)."""
        chosen = [self._last.get(host) if t == "LAST" else t for t in self.order]
        return list(dict.fromkeys(t for t in chosen if t))

    async def _lookup(self, host: str, qtype: str) -> DnsAnswer | None:
        """Endpoints of one type; None stops the search (NXDOMAIN or no server answered)."""
        reply = await self._query(host, qtype)
        if reply is None or reply.nxdomain:
            return None
        if qtype == "SRV":
            return await self._srv(reply)
        if qtype == "CNAME":
            return await self._cname(reply)
        return _address_answer(reply, qtype)

    async def _query(self, name: str, qtype: str) -> Reply | None:
        return await query(self.servers, name, qtype, timeout=self.timeout)

    async def _srv(self, reply: Reply) -> DnsAnswer:
        rrs = [rr for rr in records(reply, "SRV") if str(rr.rdata.target) not in (".", "")]
        wanted = {_name(rr.rdata.target) for rr in rrs}
        found = await asyncio.gather(*(self._target_ips(reply, name) for name in wanted))
        ips = dict(zip(wanted, (f[0] for f in found)))
        ttls = [rr.ttl for rr in rrs] + [t for f in found for t in f[1]]
        tuples = [(rr.rdata.priority, rr.rdata.weight, rr.rdata.port, _name(rr.rdata.target))
                  for rr in rrs]
        return DnsAnswer(srv_endpoints(tuples, lambda n: ips.get(n, [])), answer_ttl(ttls))

    async def _target_ips(self, reply: Reply, name: str) -> tuple[list[str], list[int]]:
        """An SRV target's ips and their TTLs: IP literal, additional section, hosts, A query."""
        if is_ip(name):
            return [name], []
        extra = [rr for rr in records(reply, "A", "additional") if _name(rr.rname) == name]
        if extra:
            return [str(rr.rdata) for rr in extra], [rr.ttl for rr in extra]
        local = self.hosts.lookup(name, self.families)
        if local:
            return local, []
        follow = await self._query(name, "A")
        rrs = [] if follow is None else records(follow, "A")
        return [str(rr.rdata) for rr in rrs], [rr.ttl for rr in rrs]

    async def _cname(self, reply: Reply) -> DnsAnswer:
        aliases = records(reply, "CNAME")
        if not aliases:
            return DnsAnswer(())
        follow = await self._query(_name(aliases[0].rdata.label), "A")
        answer = DnsAnswer(()) if follow is None else _address_answer(follow, "A")
        ttl = answer_ttl([aliases[0].ttl]) if answer.ttl is None else answer.ttl
        return DnsAnswer(answer.endpoints, ttl)


def _name(label: Any) -> str:
    return str(label).rstrip(".").lower()


def _address_answer(reply: Reply, qtype: str) -> DnsAnswer:
    rrs = records(reply, qtype)  # a recursive server puts the CNAME chain's end here too
    endpoints = tuple(sorted({Endpoint(str(rr.rdata)) for rr in rrs}))
    return DnsAnswer(endpoints, answer_ttl(rr.ttl for rr in rrs))


def resolver_for_settings(settings: Any) -> Resolver:
    """The resolver a node's settings ask for (`dns_resolver`, `dns_order`, `dns_hostsfile`)."""
    configured = getattr(settings, "dns_resolver", ()) or ()
    order = getattr(settings, "dns_order", DEFAULT_ORDER) or DEFAULT_ORDER
    hostsfile = getattr(settings, "dns_hostsfile", HOSTS) or HOSTS
    servers = list(configured) or nameservers()
    if not servers and hostsfile == HOSTS:
        return getaddrinfo_resolver()  # which reads /etc/hosts itself
    return DnsResolver(servers, order, hosts=HostsFile(hostsfile))  # no servers: hosts file, then getaddrinfo
