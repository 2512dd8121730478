"""The data plane's DNS proxy: `<service>.mesh` answered locally, everything else forwarded.

Rules (Kuma's in-process DNS proxy, `app/kuma-dp/pkg/dataplane/dnsproxy`):
- Listens on UDP **and** TCP (kuma#15400: TCP DNS must work too), `--dns-proxy-port` (15053),
  where `install transparent-proxy --redirect-dns` sends the host's DNS traffic.
- A and AAAA questions for a name in the table (VIPs of the data plane's mesh, both name forms)
  are answered authoritatively, TTL 60 s; an AAAA for a mesh name gets an empty answer (the VIPs
  are IPv4). Only the first question of a query is looked at.
- Anything else (other names, other types) is forwarded unchanged to the first nameserver of
  `/etc/resolv.conf` over the same transport and its answer relayed unchanged: NXDOMAIN stays
  NXDOMAIN. No answer within the timeout gives SERVFAIL.
- Reachable services (see `_permissions.reachable_services`): the name of a mesh service this
  data plane may not reach is not answered (Kuma only configures DNS for the reachable
  outbounds): NXDOMAIN, given here rather than forwarded, and logged once per name and table, so
  a user sees why the name does not resolve.
- The table is replaced whole on each configuration; it lives in the data plane, so names keep
  resolving while the control plane is down (and after a restart, from the cached config).
"""
from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from ._vips import TTL

log = logging.getLogger("meshway.mesh.dns")
FORWARD_TIMEOUT = 3.0
MAX_TCP_MESSAGE = 65535


def upstream_from_resolv_conf(path: str = "/etc/resolv.conf") -> tuple[str, int] | None:
    """The first `nameserver` line, as Kuma's proxy uses it."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return parts[1], 53
    except OSError:
        return None
    return None


class MeshResolver:
    """Answers from the mesh table; says None for what must be forwarded."""

    def __init__(self) -> None:
        self.table: dict[str, str] = {}
        self.hidden: dict[str, str] = {}  # names of mesh services this data plane may not reach
        self._told: set[str] = set()

    def answer(self, query: DNSRecord) -> DNSRecord | None:
        if not query.questions:
            return None
        question = query.questions[0]
        name = str(question.qname).rstrip(".").lower()
        ip = self.table.get(name)
        if ip is None and name in self.hidden:
            return self._unreachable(query, name)
        if ip is None or question.qtype not in (QTYPE.A, QTYPE.AAAA):
            return None
        reply = query.reply()  # aa=1, ra=1, the query's id and question
        if question.qtype == QTYPE.A:
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        return reply


    def _unreachable(self, query: DNSRecord, name: str) -> DNSRecord:
        if name not in self._told:  # bounded: at most one entry per hidden name
            self._told.add(name)
            log.warning("DNS %s: NXDOMAIN, a mesh service this data plane may not reach (reachable services: "
                        "transparentProxying.reachableServices, or no MeshTrafficPermission allows it)", name)
        reply = query.reply()
        reply.header.rcode = RCODE.NXDOMAIN
        return reply


class DnsProxy:
    """UDP and TCP servers on one port, on the data plane's event loop."""

    def __init__(self, host: str, port: int, upstream: tuple[str, int] | None) -> None:
        self.host, self.port, self.upstream = host, port, upstream
        self.resolver = MeshResolver()
        self._udp: Any = None
        self._tcp: asyncio.Server | None = None

    def set_table(self, table: dict[str, str], hidden: dict[str, str] | None = None) -> None:
        self.resolver.table = dict(table)
        self.resolver.hidden = {name: ip for name, ip in (hidden or {}).items() if name not in table}
        self.resolver._told = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _UdpServer(self), local_addr=(self.host, self.port))
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port, reuse_address=True)
        log.info("DNS proxy on %s:%d (udp, tcp), forwarding to %s", self.host, self.port,
                 f"{self.upstream[0]}:{self.upstream[1]}" if self.upstream else "nothing (no nameserver)")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()

    async def resolve(self, data: bytes, tcp: bool) -> bytes | None:
        """The reply bytes for one query message (None: not even a DNS message, drop it)."""
        try:
            query = DNSRecord.parse(data)
        except Exception:  # dnslib raises several kinds on garbage; a bad packet is dropped
            return None
        local = self.resolver.answer(query)
        if local is not None:
            return local.pack()
        try:
            return await (self._forward_tcp(data) if tcp else self._forward_udp(data))
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
            log.debug("forwarding %s failed: %s", query.q.qname if query.questions else "?", e)
            reply = query.reply()
            reply.header.rcode = RCODE.SERVFAIL
            reply.header.aa = 0
            return reply.pack()

    async def _forward_udp(self, data: bytes) -> bytes:
        if self.upstream is None:
            raise OSError("no upstream nameserver")
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UdpClient(done), remote_addr=self.upstream)
        try:
            transport.sendto(data)
            return await asyncio.wait_for(done, FORWARD_TIMEOUT)
        finally:
            transport.close()

    async def _forward_tcp(self, data: bytes) -> bytes:
        if self.upstream is None:
            raise OSError("no upstream nameserver")
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream), FORWARD_TIMEOUT)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), FORWARD_TIMEOUT))[0]
            return await asyncio.wait_for(reader.readexactly(size), FORWARD_TIMEOUT)
        finally:
            writer.close()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # a client may send several queries on one connection
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 10))[0]
                reply = await self.resolve(await asyncio.wait_for(reader.readexactly(size), 10), tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            pass
        finally:
            writer.close()


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, proxy: DnsProxy) -> None:
        self.proxy = proxy
        self.tasks: set[asyncio.Task] = set()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        task = asyncio.get_running_loop().create_task(self._reply(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reply(self, data: bytes, addr) -> None:
        reply = await self.proxy.resolve(data, tcp=False)
        if reply is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future) -> None:
        self.done = done

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

