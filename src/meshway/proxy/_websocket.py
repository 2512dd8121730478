"""Kong Enterprise's WebSocket handshake check, for routes whose protocols are `ws`/`wss`.

Rules (RFC 6455 4.1, in the order Kong Enterprise's `ws_handshake` phase checks them): a request
on such a route is a GET with `Connection` holding the `upgrade` token, `Upgrade` holding
`websocket`, a `Sec-WebSocket-Key` and `Sec-WebSocket-Version: 13`. Anything else (a plain request,
an HTTP/2 request, which has no `Connection`) is answered 400 `Cannot complete WebSocket handshake:
<reason>` before any plugin runs or anything is dialled.
"""
from __future__ import annotations

from typing import Callable

__all__ = ["handshake_error"]


def handshake_error(method: str, header: Callable[[str], str | None]) -> str | None:
    """Why the request is not a WebSocket handshake (Kong Enterprise's message), or None if it is."""
    if method != "GET":
        return "invalid request method"
    if "upgrade" not in (header("connection") or "").lower():
        return "invalid/missing 'Connection' header"
    if "websocket" not in (header("upgrade") or "").lower():
        return "invalid/missing 'Upgrade' header"
    if not header("sec-websocket-key"):
        return "invalid/missing 'Sec-WebSocket-Key' header"
    if header("sec-websocket-version") != "13":
        return "invalid/missing 'Sec-WebSocket-Version' header"
    return None
