"""HTTP/2 and gRPC in the data plane: client connections, streams, HTTP/2 upstreams.

For the worker: `install()` registers `handoff` with `meshway.proxy.set_h2_handoff` (before the
`Worker` is built; `meshway.proxy.worker` registers a stand-in that imports this package with
the first HTTP/2 connection, so a worker that never gets one does not load `h2`); the HTTP/1.1 protocol then calls `handoff(h1, transport)` when ALPN chose
`h2`, and `handoff(h1, transport, first_bytes)` when a plain `http2` listener's connection
starts with the HTTP/2 preface (`is_preface(first_bytes)`). `close_pools(worker)` on shutdown.

Map: `_server` (client connection, h2 events) -> `_stream` (one request through the shared
pipeline) -> `_h1leg` (HTTP/1.1 upstreams via the worker's pool) or `_h2leg` + `_h2up` (gRPC
upstreams, multiplexed); `_headers` (RFC 9113 field rules), `_grpc` (gRPC errors), `_hpack`
(the header encoder); `_codec` picks, per `http2_impl`, the compiled twin of the per-request
steps of `_h2conn`, `_hpack` and `_headers` (`meshway.proxy._core._h2codec`) or the Python ones.
"""
from __future__ import annotations

from typing import Any

from .._preface import PREFACE, is_preface
from ._grpc import GRPC_MESSAGES, HTTP_TO_GRPC, grpc_error_headers, grpc_status_for, is_grpc
from ._h2up import H2Pool
from ._server import H2Server

__all__ = ["GRPC_MESSAGES", "H2Pool", "H2Server", "HTTP_TO_GRPC", "PREFACE", "close_pools", "grpc_error_headers",
           "grpc_status_for", "handoff", "install", "is_grpc", "is_preface"]



def handoff(h1: Any, transport: Any, data: bytes = b"") -> None:
    """Take a connection over from the HTTP/1.1 protocol `h1` (nothing parsed by it yet)."""
    timer = getattr(h1, "timer", None)
    if timer is not None:
        timer.cancel()
        h1.timer = None
    h1.deadline_kind = None
    h1.closed = True  # the HTTP/1.1 side is done with this transport
    h1.worker.connections.discard(h1)
    server = H2Server(h1.worker, h1.scheme, h1.listen_port, h1.client_ip, h1.client_port, h1.sni, h1.dst)
    transport.set_protocol(server)
    server.connection_made(transport)
    if data:
        server.data_received(data)


def install() -> None:
    """Register `handoff` as the worker's HTTP/2 connection handler."""
    from meshway.proxy import set_h2_handoff

    set_h2_handoff(handoff)


def close_pools(worker: Any) -> None:
    """Close the worker's HTTP/2 upstream connections."""
    from ._h2up import _POOLS

    pool = _POOLS.pop(worker, None)
    if pool is not None:
        pool.close()
