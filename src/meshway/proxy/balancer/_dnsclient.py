"""A small asynchronous DNS client: one question, over UDP on the running loop, via dnslib.

Rules:
- Servers are asked in order; each gets `attempts` tries of `timeout` seconds. The first
  server that answers decides, whatever the answer (NXDOMAIN included): a server that answers
  is not second-guessed by the next one.
- A reply must carry the query's id and question, else it is ignored (late or spoofed).
- A truncated UDP reply is asked again over TCP to the same server (Kong does the same).
- `None` means no server answered: the caller tells that apart from "no such record".
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from dnslib import DNSRecord, QTYPE, RCODE

log = logging.getLogger("meshway.balancer")

Server = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Reply:
    """A server's answer: its rcode, and the answer and additional sections (dnslib RRs)."""

    rcode: int
    answers: tuple
    additional: tuple

    @property
    def nxdomain(self) -> bool:
        return self.rcode == RCODE.NXDOMAIN


class _UdpQuery(asyncio.DatagramProtocol):
    def __init__(self, request: DNSRecord) -> None:
        self.request = request
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            reply = DNSRecord.parse(data)
        except Exception:  # garbage on our port: keep waiting for the real reply
            return
        if _matches(self.request, reply) and not self.done.done():
            self.done.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


def _matches(request: DNSRecord, reply: DNSRecord) -> bool:
    return reply.header.id == request.header.id and reply.q == request.q


async def _udp(server: Server, request: DNSRecord, timeout: float) -> DNSRecord:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _UdpQuery(request), remote_addr=server)
    try:
        transport.sendto(request.pack())
        return await asyncio.wait_for(proto.done, timeout)
    finally:
        transport.close()


async def _tcp(server: Server, request: DNSRecord, timeout: float) -> DNSRecord:
    async def exchange() -> DNSRecord:
        reader, writer = await asyncio.open_connection(*server)
        try:
            data = request.pack()
            writer.write(len(data).to_bytes(2, "big") + data)
            size = int.from_bytes(await reader.readexactly(2), "big")
            return DNSRecord.parse(await reader.readexactly(size))
        finally:
            writer.close()
    return await asyncio.wait_for(exchange(), timeout)


async def _ask(server: Server, request: DNSRecord, timeout: float) -> DNSRecord:
    reply = await _udp(server, request, timeout)
    if reply.header.tc:
        reply = await _tcp(server, request, timeout)
    return reply


async def query(servers: list[Server], name: str, qtype: str, *, timeout: float = 2.0,
                attempts: int = 2) -> Reply | None:
    """Ask `servers` for `name`/`qtype` (e.g. "SRV"); None when none of them answered."""
    for server in servers:
        for _ in range(attempts):
            request = DNSRecord.question(name, qtype)
            try:
                reply = await _ask(server, request, timeout)
            except (OSError, asyncio.TimeoutError, EOFError, asyncio.IncompleteReadError) as e:
                log.debug("DNS %s %s to %s:%d failed: %r", qtype, name, *server, e)
                continue
            return Reply(reply.header.rcode, tuple(reply.rr), tuple(reply.ar))
    return None


def records(reply: Reply, qtype: str, section: str = "answers") -> list:
    """The RRs of type `qtype` in a section of `reply`."""
    code = getattr(QTYPE, qtype)
    return [rr for rr in getattr(reply, section) if rr.rtype == code]
