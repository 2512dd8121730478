"""Background senders to TCP and UDP log receivers, and Kong's `host`/`port` config types.

Entries go through the shared BatchQueue so that `log` never waits on the network. As in Kong
(whose tcp-log/udp-log/statsd send from a timer and only log a failure), a failed send is not
retried: the queue gets `max_retry_time=0` and drops the batch with a log line.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from meshway.model._values import check_host
from meshway.plugins.bundled._queue import QueueConfig


def _host(value: str) -> str:
    error = check_host(value)
    if error:
        raise ValueError(error)
    return value


Host = Annotated[str, AfterValidator(_host)]
Port = Annotated[int, Field(ge=0, le=65535)]

# One write or one datagram burst per wakeup; no retries (Kong's timers do not retry).
FIRE_AND_FORGET = QueueConfig(max_batch_size=100, max_coalescing_delay=0, max_entries=10000, max_retry_time=0)


class TcpSender:
    """Writes each batch of newline-terminated entries on one kept-alive connection."""

    def __init__(self, host: str, port: int, timeout_ms: float, keepalive_ms: float,
                 tls: bool = False, tls_sni: str | None = None) -> None:
        self.host, self.port = host, port
        self.timeout = timeout_ms / 1000
        self.keepalive = keepalive_ms / 1000
        self.tls, self.tls_sni = tls, tls_sni
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._loop: Any = None
        self._last_used = 0.0

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        # Kong's tcp-log handshakes with verify=false.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    async def _connection(self) -> asyncio.StreamWriter:
        loop = asyncio.get_running_loop()
        if self._conn is not None:
            reader, writer = self._conn
            stale = time.monotonic() - self._last_used > self.keepalive
            if self._loop is loop and not stale and not reader.at_eof() and not writer.is_closing():
                return writer
            self.close()
        tls = self._ssl()
        opening = asyncio.open_connection(self.host, self.port, ssl=tls,
                                          server_hostname=(self.tls_sni or self.host) if tls else None)
        try:
            self._conn = await asyncio.wait_for(opening, self.timeout)
        except Exception as e:
            raise RuntimeError(f"failed to connect to {self.host}:{self.port}: {e or type(e).__name__}") from e
        self._loop = loop
        return self._conn[1]

    async def __call__(self, batch: list[bytes]) -> None:
        writer = await self._connection()
        try:
            writer.write(b"".join(entry + b"\n" for entry in batch))
            await asyncio.wait_for(writer.drain(), self.timeout)
        except Exception as e:
            self.close()
            raise RuntimeError(f"failed to send data to {self.host}:{self.port}: {e or type(e).__name__}") from e
        self._last_used = time.monotonic()
        if self.keepalive <= 0:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


class _Datagrams(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable: Kong ignores it too
        pass


class UdpSender:
    """Sends each entry as one datagram from a connected UDP socket, one per event loop."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: Any = None

    async def _endpoint(self) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        if self._transport is None or self._loop is not loop or self._transport.is_closing():
            try:
                self._transport, _ = await loop.create_datagram_endpoint(
                    _Datagrams, remote_addr=(self.host, self.port), family=socket.AF_UNSPEC)
            except OSError as e:
                raise RuntimeError(f"could not connect to {self.host}:{self.port}: {e}") from e
            self._loop = loop
        return self._transport

    async def __call__(self, batch: list[bytes]) -> None:
        transport = await self._endpoint()
        for entry in batch:
            transport.sendto(entry)
