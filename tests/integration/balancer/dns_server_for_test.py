"""A real DNS server for tests: dnslib's DNSServer on 127.0.0.1 and a free UDP port, in a thread.

It answers from a zone (text in zone-file syntax) that a test can replace while it runs; names
it does not know get NXDOMAIN, known names without the asked type an empty NOERROR answer.
SRV answers carry their targets' A records in the additional section unless `additional` is off.
"""
from __future__ import annotations

import threading

from dnslib import QTYPE, RCODE, RR
from dnslib.server import DNSLogger, DNSServer

_QUIET = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)


class DnsServer_for_test:
    """A dnslib resolver serving a mutable zone; `asked` records (name, type) questions."""

    def __init__(self, zone: str = "", additional: bool = True) -> None:
        self.additional = additional
        self.asked: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.set_zone(zone)
        self.server = DNSServer(self, address="127.0.0.1", port=0, logger=_QUIET)
        self.port = self.server.server.server_address[1]
        self.address = ("127.0.0.1", self.port)

    def set_zone(self, zone: str) -> None:
        rrs = RR.fromZone(zone) if zone.strip() else []
        with self._lock:
            self.rrs = rrs

    def start(self) -> "DnsServer_for_test":
        self.server.start_thread()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.server.server.server_close()

    def resolve(self, request, handler):  # dnslib's resolver interface
        q = request.q
        self.asked.append((str(q.qname).rstrip("."), QTYPE[q.qtype]))
        with self._lock:
            rrs = list(self.rrs)
        reply = request.reply()
        named = [rr for rr in rrs if rr.rname == q.qname]
        if not named:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rr in named:
            if rr.rtype == q.qtype:
                reply.add_answer(rr)
                if rr.rtype == QTYPE.SRV and self.additional:
                    for extra in rrs:
                        if extra.rtype == QTYPE.A and extra.rname == rr.rdata.target:
                            reply.add_ar(extra)
        return reply


def srv_zone_for_test(name: str, entries: list[tuple[int, int, int, str]], ttl: int = 1,
                      hosts: dict[str, str] | None = None) -> str:
    """Zone text: SRV `entries` (priority, weight, port, host) for `name`, plus A records."""
    lines = [f"{name}. {ttl} IN SRV {p} {w} {port} {host}." for p, w, port, host in entries]
    lines += [f"{host}. {ttl} IN A {ip}" for host, ip in (hosts or {}).items()]
    return "\n".join(lines) + "\n"
