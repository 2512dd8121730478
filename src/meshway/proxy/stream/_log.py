"""One line per stream connection, on `meshway.stream` and on the access log.

The access log is the node's writer when `start_stream_listener(..., access_log=...)` got one,
else the logger `meshway.access.stream`.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from ._tls import certificate_subject

logger = logging.getLogger("meshway.stream")
access_logger = logging.getLogger("meshway.access.stream")

# Why a connection ended. The first to happen wins; later events do not overwrite it.
CLIENT_CLOSED = "client_closed"
UPSTREAM_CLOSED = "upstream_closed"
CLIENT_RESET = "client_reset"
UPSTREAM_RESET = "upstream_reset"
IDLE_TIMEOUT = "timeout"
NO_ROUTE = "no_route"
NO_SERVICE = "no_service"
NO_UPSTREAM = "no_upstream"
CONNECT_FAILED = "connect_failed"
CLIENT_TLS_FAILED = "client_tls_failed"
UPSTREAM_TLS_FAILED = "upstream_tls_failed"
BAD_PROXY_HEADER = "bad_proxy_header"
MESH_REFUSED = "mesh_refused"  # a mesh client without a valid certificate, or a plain one in strict mode
MESH_DENIED = "mesh_denied"  # a mesh client a MeshTrafficPermission does not allow
MESH_UNREACHABLE = "mesh_unreachable"  # a call to a service outside this data plane's reachable services
INTERNAL_ERROR = "internal_error"


@dataclasses.dataclass
class ConnectionRecord:
    """What the log line says about one connection; filled in as the connection goes."""

    client: str = "-"
    destination: str = "-"
    listener: str = "-"
    kind: str = "-"  # tcp | tls, as the first bytes told (tcp when nothing came)
    sni: str | None = None
    route: str = "-"
    mode: str = "-"  # raw | terminate | passthrough | mesh (inbound mutual TLS terminated)
    upstream: str = "-"
    upstream_tls: bool = False
    upstream_der: bytes | None = None  # parsed into a subject only when the line is written
    up_bytes: int = 0
    down_bytes: int = 0
    reason: str | None = None
    detail: str | None = None
    mtls: bool = False  # the sidecar-to-sidecar hop (inbound or outbound) is mesh mutual TLS
    peer: str | None = None  # the other sidecar's SPIFFE id

    def line(self, duration: float) -> str:
        parts = [
            f"client={self.client}", f"dst={self.destination}", f"listener={self.listener}",
            f"kind={self.kind}", f"sni={self.sni or '-'}", f"route={self.route}", f"mode={self.mode}",
            f"upstream={self.upstream}", f"upstream_tls={'yes' if self.upstream_tls else 'no'}",
            f"upstream_subject={_quote(certificate_subject(self.upstream_der))}",
            f"mtls={'yes' if self.mtls else 'no'}", f"peer={self.peer or '-'}",
            f"up_bytes={self.up_bytes}", f"down_bytes={self.down_bytes}",
            f"duration={duration:.3f}", f"close={self.reason or '-'}",
        ]
        if self.detail:
            parts.append(f"error={_quote(self.detail)}")
        return "stream " + " ".join(parts)


def _quote(text: str | None) -> str:
    if not text:
        return "-"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def emit(record: ConnectionRecord, duration: float, access_log: Callable[[str], None] | None = None) -> None:
    """The line on `meshway.stream`, and on the access log (the node's writer if it gave one)."""
    line = record.line(duration)
    level = logging.INFO if record.reason in (CLIENT_CLOSED, UPSTREAM_CLOSED) else logging.WARNING
    logger.log(level, line)
    if access_log is not None:
        access_log(line)
    else:
        access_logger.info(line)
