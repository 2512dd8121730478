"""One active health probe (tcp, http or https) of one peer; the only socket code here.

An outcome is one of the health kinds: OK, HTTP (a status in `unhealthy.http_statuses`),
TCP (refused, reset, TLS handshake or certificate failure, garbled answer) or TIMEOUT; None
when the status is in neither list. HTTP probes speak HTTP/1.0 with `Connection: close`, as
Kong's checker does, so a probe never waits on a keep-alive body.
"""
from __future__ import annotations

import asyncio
import ssl

from ._health import OK, TCP, TIMEOUT, HealthConfig
from ._peer import Peer

MAX_STATUS_LINE = 1024
# gRPC health checking needs HTTP/2; until then grpc(s) probes check connect (and TLS) only.
CONNECT_ONLY = frozenset({"tcp", "grpc", "grpcs"})
TLS_TYPES = frozenset({"https", "grpcs"})


def probe_ssl_context(cfg: HealthConfig, cafile: str | None) -> ssl.SSLContext | None:
    """The client TLS context of an upstream's https probes, built once per config."""
    if cfg.probe_type not in TLS_TYPES:
        return None
    ctx = ssl.create_default_context(cafile=cafile)
    if not cfg.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def request_bytes(peer: Peer, cfg: HealthConfig) -> bytes:
    lines = [f"GET {cfg.http_path} HTTP/1.0", f"Host: {peer.hostname}:{peer.port}"]
    lines += [f"{name}: {value}" for name, value in cfg.headers]
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def parse_status(line: bytes) -> int:
    version, _, rest = line.partition(b" ")
    if not version.startswith(b"HTTP/"):
        raise ValueError("not an HTTP status line")
    return int(rest[:3])


async def probe(peer: Peer, cfg: HealthConfig, ctx: ssl.SSLContext | None) -> str | None:
    """Check `peer` once, within `cfg.timeout` seconds."""
    try:
        return await asyncio.wait_for(_probe(peer, cfg, ctx), cfg.timeout)
    except (asyncio.TimeoutError, TimeoutError):
        return TIMEOUT
    except (OSError, ValueError, asyncio.IncompleteReadError, ssl.SSLError):
        return TCP


async def _probe(peer: Peer, cfg: HealthConfig, ctx: ssl.SSLContext | None) -> str | None:
    sni = (cfg.sni or peer.hostname) if ctx is not None else None
    reader, writer = await asyncio.open_connection(peer.host, peer.port, ssl=ctx,
                                                   server_hostname=sni)
    try:
        if cfg.probe_type in CONNECT_ONLY:
            return OK
        writer.write(request_bytes(peer, cfg))
        line = await reader.readuntil(b"\n")
        return cfg.active.classify(parse_status(line[:MAX_STATUS_LINE]))
    finally:
        writer.transport.abort()  # no TLS close_notify dance: the probe is over
