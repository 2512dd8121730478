"""The floor: a minimal HTTP/1.1 reverse proxy (uvloop + httptools Protocols, pooled upstream
connections, one write per read), as in /work/shared/PERFORMANCE-NOTES.md.

    python bench/minimal_proxy.py LISTEN_PORT ORIGIN_PORT

Not a product: no routing, no header policy beyond dropping hop-by-hop headers, bodies only
with Content-Length (enough for the GET benchmark). It exists to measure, on this machine and
with the same harness, how much CPU per request any uvloop+httptools proxy must spend, so the
cost meshway adds on top of it is known.
"""
from __future__ import annotations

import asyncio
import socket
import sys

import httptools
import uvloop

_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host"})


class Upstream(asyncio.Protocol):
    """One pooled connection to the origin."""

    def __init__(self, pool: list, host: bytes) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.client: Client | None = None
        self.out: list[bytes] = []
        self.transport = None
        self.keep = True

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)
        if self.out:  # one write per upstream read
            client = self.client or self.last
            client.transport.write(b"".join(self.out))
            self.out.clear()

    def on_message_begin(self) -> None:
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _HOP:
            self.headers += (name, b": ", value, b"\r\n")
        elif name.lower() == b"content-length":
            self.headers += (b"Content-Length: ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        self.keep = self.parser.should_keep_alive()  # httptools resets after the message
        self.out.append(b"HTTP/1.1 %d OK\r\n%s\r\n" % (self.parser.get_status_code(), b"".join(self.headers)))

    def on_body(self, body: bytes) -> None:
        self.out.append(body)

    def on_message_complete(self) -> None:
        self.last, self.client = self.client, None
        if self.keep:
            self.pool.append(self)
        else:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if self in self.pool:
            self.pool.remove(self)


class Client(asyncio.Protocol):
    """One client connection."""

    def __init__(self, loop, origin: tuple[str, int], pool: list) -> None:
        self.loop = loop
        self.origin = origin
        self.pool = pool
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _HOP:
            self.headers += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        head = b"%s %s HTTP/1.1\r\nHost: origin\r\n%s\r\n" % (self.parser.get_method(), self.url,
                                                               b"".join(self.headers))
        if self.pool:
            self._send(self.pool.pop(), head)
        else:
            self.loop.create_task(self._connect(head))

    async def _connect(self, head: bytes) -> None:
        _, up = await self.loop.create_connection(lambda: Upstream(self.pool, b"origin"), *self.origin)
        self._send(up, head)

    def _send(self, up: Upstream, head: bytes) -> None:
        up.client = self
        up.transport.write(head)


async def main(port: int, origin_port: int) -> None:
    loop = asyncio.get_running_loop()
    pool: list = []
    server = await loop.create_server(lambda: Client(loop, ("127.0.0.1", origin_port), pool),
                                      "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
