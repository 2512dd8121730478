"""Mesh termination in front of a plain (non-TLS) protocol, such as the HTTP/1.1 server.

Rules:
- Only connections whose original destination this sidecar fronts are looked at; any other
  connection is handed to the inner protocol at once, untouched (no cost on that path).
- The first client bytes decide: a ClientHello with the mesh SNI is terminated here (node
  certificate, client certificate from the mesh CA required, ALPN `meshway-mesh/1`), and the
  inner protocol then sees plaintext through `MeshTransport` as if the client had connected
  in the clear; anything else goes to the inner protocol unchanged, unless `strict` refuses it.
- A client that sends nothing for `first_bytes_timeout` is closed (the inner protocol's own
  header timeout only starts once it has the connection).
- Refusals are logged on `meshway.mesh` with the client, the destination and the reason.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Callable

from ._runtime import MESH_ALPN, MeshRuntime, is_mesh_sni, peer_spiffe_id

log = logging.getLogger("meshway.mesh")
_READ = 256 * 1024


def sniffing_factory(factory: Callable[[], asyncio.Protocol], get_mesh: Callable[[], MeshRuntime],
                     original_destination: Callable[[Any], tuple[str, int] | None],
                     first_bytes_timeout: float) -> Callable[[], asyncio.Protocol]:
    """Wrap a plain listener's protocol factory so fronted destinations can be mesh-terminated."""
    from meshway.proxy.stream import parse_client_hello  # the proxy's parser; loaded with the first sidecar

    def make() -> asyncio.Protocol:
        return MeshSniffer(factory(), get_mesh, original_destination, first_bytes_timeout, parse_client_hello)

    return make


class MeshTransport(asyncio.Transport):
    """The plaintext side of a terminated mesh connection, as the inner protocol sees it."""

    def __init__(self, raw: asyncio.Transport, tls: ssl.SSLObject, outgoing: ssl.MemoryBIO) -> None:
        super().__init__()
        self._raw, self._tls, self._out = raw, tls, outgoing

    def _flush(self) -> None:
        data = self._out.read()
        if data and not self._raw.is_closing():
            self._raw.write(data)

    def write(self, data: bytes) -> None:
        try:
            self._tls.write(data)
        except ssl.SSLError:
            self._raw.abort()
            return
        self._flush()

    def writelines(self, chunks) -> None:
        self.write(b"".join(chunks))

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        try:
            self._tls.unwrap()
        except ssl.SSLError:
            pass
        self._flush()
        self._raw.close()

    def abort(self) -> None:
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._tls
        if name == "peercert":
            return self._tls.getpeercert()
        return self._raw.get_extra_info(name, default)


class MeshSniffer(asyncio.Protocol):
    """Reads the first bytes of a fronted destination's connection and terminates the mesh hop."""

    def __init__(self, inner: asyncio.Protocol, get_mesh: Callable[[], MeshRuntime],
                 original_destination: Callable[[Any], tuple[str, int] | None], first_bytes_timeout: float,
                 parse_hello: Callable[[bytes], Any]) -> None:
        self.inner, self._get_mesh, self._dst_of = inner, get_mesh, original_destination
        self._timeout, self._parse = first_bytes_timeout, parse_hello
        self._buffer = bytearray()
        self._tls: ssl.SSLObject | None = None
        self._in = self._out = None
        self._timer: asyncio.TimerHandle | None = None
        self.mesh: MeshRuntime | None = None
        self.peer: str | None = None

    # -- deciding
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.src = peer[0][7:] if peer[0].startswith("::ffff:") else peer[0]
        self.mesh = self._get_mesh()
        sock = transport.get_extra_info("socket")
        self.dst = self._dst_of(sock) if sock is not None else None
        if self.dst is None or not self.mesh.fronts(*self.dst):
            return self._pass_through(b"")
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._refuse, "no bytes in time")

    def data_received(self, data: bytes) -> None:
        if self._tls is not None:
            return self._decrypt(data)
        self._buffer += data
        seen = self._parse(bytes(self._buffer))
        if seen.status.value == "need_more" and len(self._buffer) < 65536:
            return
        self._cancel_timer()
        if seen.status.value == "tls" and is_mesh_sni(seen.sni) and self.mesh.server_ctx is not None:
            return self._terminate()
        if not self.mesh.admits_plain(self.src, *self.dst):
            return self._refuse("mesh_mtls = strict: plain connection from outside the mesh")
        self._pass_through(bytes(self._buffer))

    def _pass_through(self, early: bytes) -> None:
        self._cancel_timer()
        self.raw.set_protocol(self.inner)
        self.inner.connection_made(self.raw)
        if early:
            self.inner.data_received(early)

    def _refuse(self, why: str) -> None:
        dst = f"{self.dst[0]}:{self.dst[1]}" if self.dst else "-"
        log.warning("mesh refused client=%s dst=%s: %s", self.src, dst, why)
        self.raw.abort()

    # -- terminating
    def _terminate(self) -> None:
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = self.mesh.server_ctx.wrap_bio(self._in, self._out, server_side=True)
        early, self._buffer = bytes(self._buffer), bytearray()
        self._decrypt(early)

    def _decrypt(self, data: bytes) -> None:
        self._in.write(data)
        if self.peer is None and not self._handshake():
            return
        chunks = []
        while True:
            try:
                chunk = self._tls.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError:
                chunk = b""
            if not chunk:  # close_notify
                self._flush()
                return self._deliver(chunks, eof=True)
            chunks.append(chunk)
        self._flush()
        self._deliver(chunks)

    def _deliver(self, chunks: list[bytes], eof: bool = False) -> None:
        if chunks:
            self.inner.data_received(b"".join(chunks))
        if eof and not self.inner.eof_received():
            self.raw.close()

    def _handshake(self) -> bool:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except (ssl.SSLError, OSError) as e:
            self._flush()
            self._refuse(f"mesh handshake failed: {getattr(e, 'reason', None) or e}")
            return False
        self._flush()
        self.peer = peer_spiffe_id(self._tls.getpeercert(binary_form=True))
        if self.peer is None or self._tls.selected_alpn_protocol() != MESH_ALPN:
            self._refuse("the peer is not a mesh node (no meshway SPIFFE id or mesh ALPN)")
            return False
        self.inner.mesh_peer = self.peer
        self.inner.connection_made(MeshTransport(self.raw, self._tls, self._out))
        return True

    def _flush(self) -> None:
        data = self._out.read()
        if data and not self.raw.is_closing():
            self.raw.write(data)

    # -- the rest goes to the inner protocol
    def eof_received(self) -> bool | None:
        if self.peer is not None:
            return self.inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self.peer is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
