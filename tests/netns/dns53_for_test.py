"""A real DNS server on 127.0.0.1:53 inside a test's network namespace (run with `ip netns exec`).

The namespace's /etc/netns/<name>/resolv.conf points at it, so every process of the namespace
(meshway's getaddrinfo included) resolves through it. Port 53 is the namespace's own: nothing
else binds there. Usage: `python dns53_for_test.py ZONEFILE [ADDRESS]`; prints `ready` once it serves.
Names outside the zone are NXDOMAIN; a name with no record of the asked type is an empty answer.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from dnslib import RCODE, RR
from dnslib.server import DNSLogger, DNSServer


class ZoneResolver:
    def __init__(self, zone: str) -> None:
        self.rrs = RR.fromZone(zone)

    def resolve(self, request, handler):  # dnslib's resolver interface
        q = request.q
        reply = request.reply()
        named = [rr for rr in self.rrs if rr.rname == q.qname]
        if not named:
            reply.header.rcode = RCODE.NXDOMAIN
        reply.rr.extend(rr for rr in named if rr.rtype == q.qtype)
        return reply


def main() -> None:
    quiet = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
    address = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"  # another host's resolver: its LAN address
    server = DNSServer(ZoneResolver(Path(sys.argv[1]).read_text()), address=address, port=53, logger=quiet)
    server.start_thread()
    print("ready", flush=True)
    while server.isAlive():  # bounded by the test, which kills this process at teardown
        time.sleep(0.5)


if __name__ == "__main__":
    main()
