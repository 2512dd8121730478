"""The node's own HTTP servers (Admin API, status) on sockets the master already bound."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from typing import Any

from meshway import tlspolicy
from meshway.settings import ListenSpec


@functools.cache
def _embedded_server() -> type:
    """A uvicorn server that leaves signal handling to the master. uvicorn is imported when the
    first server is added, after the workers started: not on the way to the first request."""
    import uvicorn

    class _EmbeddedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    return _EmbeddedServer


class HttpServers:
    """One uvicorn server per (app, tls) pair, over pre-bound sockets."""

    def __init__(self) -> None:
        self._servers: list[tuple[Any, list[socket.socket]]] = []
        self._tasks: list[asyncio.Task] = []

    def add(self, app, socks: list[tuple[socket.socket, ListenSpec]], cert: str, key: str, access_log: bool,
            client_ca: str = "") -> None:
        """`client_ca`: TLS listeners refuse, at the handshake, clients without a certificate it signed."""
        for tls in (False, True):
            group = [s for s, spec in socks if spec.ssl == tls]
            if not group:
                continue
            import uvicorn

            config = uvicorn.Config(
                app, log_config=None, access_log=access_log, lifespan="off", server_header=False,
                date_header=True, loop="none", http="httptools", ws="none",
                ssl_certfile=cert if tls else None, ssl_keyfile=key if tls else None,
                ssl_ca_certs=client_ca if tls and client_ca else None,
                ssl_cert_reqs=ssl.CERT_REQUIRED if tls and client_ca else ssl.CERT_NONE,
                ssl_ciphers=tlspolicy.AEAD_CIPHERS,  # uvicorn's context is TLS 1.2+ already (Python's default)
            )
            self._servers.append((_embedded_server()(config), group))

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(server.serve(sockets=socks)) for server, socks in self._servers]
        for server, _ in self._servers:
            while not server.started:
                if any(t.done() for t in self._tasks):
                    raise RuntimeError("an HTTP server of the node failed to start")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        for server, _ in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
