"""L4 stream proxy: tcp, tls (terminated) and tls_passthrough routes, transparent listeners.

One listener serves plain and TLS clients (the first bytes tell them apart, and only when the
routes for that destination need it); `transparent` listeners take TPROXY and REDIRECT traffic
and route on the original destination; `proxy_protocol` listeners read a PROXY v1/v2 header.
On a data plane, hops to another sidecar are upgraded to mesh mutual TLS and mesh connections
to what this sidecar fronts are terminated (rules in `meshway.mesh`).

The node compiles a snapshot with `compile_stream_runtime(snapshot, settings)` and a worker
serves a listening socket with `start_stream_listener(sock, spec, get_runtime, settings)`;
`get_runtime()` is read once per new connection, so a config swap never disturbs open ones.
"""
from typing import TYPE_CHECKING

from meshway._lazy import lazy_attributes

from ._clienthello import HelloStatus, Preread, parse_client_hello
from ._router import ConnectionFacts, Plan, StreamRoute, StreamRouter, choose_route, needs_preread, plan_connection

# Every HTTP worker imports `stream._targets` (the `origins` setting) and so this package;
# compiling and serving streams pulls in `cryptography` (~10 MB RSS, via `_tls`), which a
# worker without `stream_listen` never needs: those names load on first use.
_LAZY = {"StreamRuntime": "._compile", "StreamService": "._compile", "compile_stream_runtime": "._compile",
         "start_stream_listener": "._listener"}

if TYPE_CHECKING:
    from ._compile import StreamRuntime, StreamService, compile_stream_runtime
    from ._listener import start_stream_listener


__getattr__ = lazy_attributes(__name__, globals(), _LAZY)

__all__ = [
    "ConnectionFacts", "HelloStatus", "Plan", "Preread", "StreamRoute", "StreamRouter", "StreamRuntime",
    "StreamService", "choose_route", "compile_stream_runtime", "needs_preread", "parse_client_hello",
    "plan_connection", "start_stream_listener",
]
