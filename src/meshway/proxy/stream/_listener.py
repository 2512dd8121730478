"""Serving a listening socket with stream sessions."""
from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable

from .._accept import Acceptor
from ._compile import StreamRuntime
from ._session import ListenerContext, StreamSession


async def start_stream_listener(sock: socket.socket, spec: Any, get_runtime: Callable[[], StreamRuntime],
                                settings: Any, *, access_log: Callable[[str], None] | None = None,
                                http_handoff: Callable[[Any], None] | None = None) -> Acceptor:
    """Accept stream connections on `sock` (already bound and listening, see netutil).

    `access_log(line)` receives each connection's line for the node's access log; without it
    the line goes to the logger `meshway.access.stream`. (`settings` is read at compile time:
    `stream_preread_timeout` and `proxy_bind` live in the runtime, so a reload can change them.)
    """
    context = ListenerContext(str(spec), bool(spec.ssl), get_runtime, access_log, bool(spec.proxy_protocol),
                              http_handoff)
    loop = asyncio.get_running_loop()
    return Acceptor(loop, sock, lambda: StreamSession(context))
