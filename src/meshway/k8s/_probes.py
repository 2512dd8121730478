"""KIC's health probes (`--health-probe-bind-address`, default `:10254`): `GET /healthz` answers 200
while the controller runs, `GET /readyz` 200 once a configuration reached the node (503 before).

A tiny HTTP/1.0 responder on asyncio: the probes need no framework. A port already taken is
logged and the controller runs without probes (several controllers on one host in tests).
"""
from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("meshway.ingress-controller")
MAX_REQUEST_LINE = 1024


def parse_bind(value: str) -> tuple[str, int] | None:
    """`:10254` (all interfaces), `127.0.0.1:10254`, or `off`."""
    if value.strip().lower() == "off":
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected [HOST]:PORT or off, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve(bind: tuple[str, int], ready) -> asyncio.AbstractServer | None:
    """Start the probes; `ready()` says whether /readyz is 200."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            path = line[:MAX_REQUEST_LINE].split(b" ")[1] if line.count(b" ") >= 2 else b""
            ok = path == b"/healthz" or (path == b"/readyz" and ready())
            known = path in (b"/healthz", b"/readyz")
            status = b"200 OK" if ok else (b"503 Service Unavailable" if known else b"404 Not Found")
            body = b"ok\n" if ok else (b"not ready\n" if known else b"not found\n")
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    try:
        server = await asyncio.start_server(answer, bind[0], bind[1])
    except OSError as e:
        log.warning("health probes off: cannot listen on %s:%s: %s", bind[0], bind[1], e)
        return None
    log.info("health probes on %s:%s (/healthz, /readyz)", bind[0], server.sockets[0].getsockname()[1])
    return server
