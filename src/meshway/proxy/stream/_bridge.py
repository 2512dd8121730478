"""A terminated mesh hop handed to the HTTP server: a transport over a TLS leg.

The stream session terminates mesh mutual TLS itself (memory BIOs, from the preread
ClientHello), so the TLS state cannot be moved into an asyncio SSL transport afterwards. When
the inbound speaks HTTP, this bridge sits between the client socket and the HTTP/1.1 server:
the socket's bytes are decrypted by the leg and given to the server; what the server writes is
encrypted by the leg. Backpressure and the socket's facts (peer, original destination) pass
through unchanged.

The stream session checked MeshTrafficPermission once, when the hop was terminated. A kept-alive
connection outlives configs: once the mesh runtime changed, the bridge asks again (`MeshGate`)
when the next request begins, and a peer no longer allowed gets Envoy's RBAC 403 and the
connection is closed. A request already in flight finishes under the decision that admitted it.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ._legs import TlsFailure
from ._log import logger

RBAC_DENIED = (b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 19\r\n"
               b"connection: close\r\n\r\nRBAC: access denied")


class MeshGate:
    """A terminated mesh hop's permission: decided again only when the mesh runtime has changed."""

    __slots__ = ("_mesh_of", "_der", "_dst", "_mesh")

    def __init__(self, mesh_of: Any, der: bytes | None, dst: tuple[str, int], mesh: Any) -> None:
        self._mesh_of, self._der, self._dst = mesh_of, der, dst
        self._mesh = mesh  # the runtime whose decision let the connection in

    def denial(self) -> Any:
        """None while allowed; the Decision that now denies the peer otherwise."""
        mesh = self._mesh_of()
        if mesh is self._mesh:
            return None
        verdict = mesh.check_peer(self._der, *self._dst)
        if verdict is not None and not verdict[0].allowed:
            return verdict[0]
        self._mesh = mesh
        return None


_BUSY = object()


class TlsBridge(asyncio.Transport, asyncio.Protocol):
    """The HTTP server's transport, and the client socket's protocol."""

    def __init__(self, raw: asyncio.Transport, leg: Any, gate: MeshGate | None = None) -> None:
        super().__init__()
        self._raw, self._leg, self._gate = raw, leg, gate
        self._protocol: Any = None
        self._closing = False
        self._eof_seen = False

    # ---- towards the HTTP server (its transport) ---------------------------------------

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in ("ssl_object", "sslcontext"):
            return default  # the mesh peer was verified by the stream session already
        return self._raw.get_extra_info(name, default)

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._leg.write(data)
        except TlsFailure:
            self.abort()

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not self._closing:
            self._leg.write_eof()

    def is_closing(self) -> bool:
        return self._closing or self._raw.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        try:
            self._leg.write_eof()  # close_notify, then the socket closes once flushed
        except TlsFailure:
            pass
        self._closing = True
        self._raw.close()

    def abort(self) -> None:
        self._closing = True
        self._raw.abort()

    def pause_reading(self) -> None:
        if not self._raw.is_closing():
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if not self._raw.is_closing():
            self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    # ---- from the client socket (its protocol) -----------------------------------------

    def deliver(self, plain: bytes) -> None:
        """Plaintext already decrypted by the session (the bytes that came with the handshake)."""
        if plain and not self._closing:
            if self._gate is not None and self._between_requests() and self._denied():
                return
            self._protocol.data_received(plain)
        if self._leg.eof and not self._closing:
            self._eof()

    def _between_requests(self) -> bool:
        """The HTTP/1.1 server has no request in progress: these bytes begin the next one."""
        p = self._protocol
        return getattr(p, "cur", _BUSY) is None and getattr(p, "active", _BUSY) is None \
            and getattr(p, "tunnel", _BUSY) is None

    def _denied(self) -> bool:
        decision = self._gate.denial()
        if decision is None:
            return False
        peer = self._raw.get_extra_info("peername")
        logger.warning("mesh denied client=%s on a kept-alive connection after a config change: %s",
                       peer[0] if peer else "unknown", decision.why())
        self.write(RBAC_DENIED)
        self.close()
        return True

    def data_received(self, data: bytes) -> None:
        try:
            plain = self._leg.receive(data)
        except TlsFailure:
            return self.abort()
        self.deliver(plain)

    def eof_received(self) -> bool:
        self._eof()
        return True

    def _eof(self) -> None:
        if self._eof_seen:
            return
        self._eof_seen = True
        if self._protocol.eof_received() is not True:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._protocol.resume_writing()
