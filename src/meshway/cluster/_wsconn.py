"""Server side of one cluster connection: TCP -> TLS (memory BIOs) -> websocket (sans-I/O), in one Protocol.

Why not `websockets.asyncio.server.serve` or `loop.start_tls`: asyncio swallows TLS handshake
failures silently, and the control plane must log why it refused a data plane; and handing a
raw transport to `start_tls` loses the ClientHello under uvloop (which starts reading after
`connection_made` even if the protocol paused). So this Protocol owns the whole stack: bytes
from the socket go into an `ssl.SSLObject` through memory BIOs, decrypted bytes into websockets'
`ServerProtocol`; what those layers want written goes back the same way. No await happens on
this path; the session task only waits for whole messages (`wait_tls`, `wait_request`, `recv`).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from typing import Callable

from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

_QUIET = logging.getLogger("meshway.cluster.websocket")
_QUIET.setLevel(logging.WARNING)  # websockets narrates every handshake at INFO; meshway.cluster says what matters


class Closed(ConnectionError):
    """The connection is closed; no more messages will arrive."""


class WsConnection(asyncio.Protocol):
    """One accepted data-plane connection; messages come out whole (fragments reassembled)."""

    def __init__(self, ctx: ssl.SSLContext, max_size: int, on_made: Callable[["WsConnection"], None]) -> None:
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._in, self._out, server_side=True)
        self._on_made = on_made
        self.ws = ServerProtocol(max_size=max_size, logger=_QUIET)
        self.request: Request | None = None
        self.tls_error: BaseException | None = None
        self.tls_done = False
        self.transport: asyncio.Transport | None = None
        self._inbox: collections.deque[str | bytes] = collections.deque()
        self._fragments: list[bytes] = []
        self._text = False
        self._wakeup = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._lost = False
        self._abort_armed = False

    # asyncio.Protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self._in.write(data)
        if not self.tls_done:
            self._handshake_step()
        if self.tls_done:
            self._decrypt()
        self._wakeup.set()

    def eof_received(self) -> bool:
        if not self.tls_done:
            self._tls_failed(ConnectionResetError("connection closed during the TLS handshake"))
        else:
            self.ws.receive_eof()
            self._flush()
        self._wakeup.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if not self.tls_done and self.tls_error is None:
            self.tls_error = exc or ConnectionResetError("connection closed during the TLS handshake")
        self._wakeup.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # TLS layer
    def _send_encrypted(self) -> None:
        data = self._out.read()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def _handshake_step(self) -> None:
        try:
            self._tls.do_handshake()
            self.tls_done = True
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, OSError) as e:
            self._tls_failed(e)
        self._send_encrypted()  # handshake records, or the alert explaining a refusal

    def _tls_failed(self, exc: BaseException) -> None:
        self.tls_error = self.tls_error or exc
        self._send_encrypted()
        self.transport.close()

    def _decrypt(self) -> None:
        while True:
            try:
                chunk = self._tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLError):
                self.ws.receive_eof()
                break
            if not chunk:
                break
            self.ws.receive_data(chunk)
        self._collect()
        self._flush()

    @property
    def peer_der(self) -> bytes | None:
        return self._tls.getpeercert(binary_form=True) if self.tls_done else None

    # websocket layer
    @property
    def closed(self) -> bool:
        return self._lost or self.ws.state.name in ("CLOSING", "CLOSED")

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                self._tls.write(chunk)
            else:  # websockets asks for EOF: the closing handshake is done
                self._send_encrypted()
                self.transport.close()
                return
        self._send_encrypted()
        if self.ws.close_expected() and not self._abort_armed:
            # The peer should finish the closing handshake; do not wait for it forever.
            self._abort_armed = True
            asyncio.get_running_loop().call_later(2.0, self.transport.abort)

    def _collect(self) -> None:
        for event in self.ws.events_received():
            if isinstance(event, Request):
                self.request = event
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._text = event.opcode is Opcode.TEXT
                self._add_fragment(event.data, event.fin)
            elif event.opcode is Opcode.CONT:
                self._add_fragment(event.data, event.fin)

    def _add_fragment(self, data: bytes, fin: bool) -> None:
        self._fragments.append(bytes(data))
        if fin:
            whole = b"".join(self._fragments)
            self._fragments = []
            self._inbox.append(whole.decode() if self._text else whole)

    # What the session task awaits
    async def _wait(self, ready: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not ready():
                if self.closed or self.tls_error is not None:
                    raise Closed(self._close_text())
                self._wakeup.clear()
                await self._wakeup.wait()

    def _close_text(self) -> str:
        rcvd = self.ws.close_rcvd
        return f"closed by peer ({rcvd.code} {rcvd.reason})".strip() if rcvd else "connection closed"

    async def wait_tls(self, timeout: float) -> None:
        """Wait for the TLS handshake; raises its error (ssl.SSLError, ConnectionError) or TimeoutError."""
        try:
            async with asyncio.timeout(timeout):
                while not self.tls_done and self.tls_error is None:
                    self._wakeup.clear()
                    await self._wakeup.wait()
        except TimeoutError:
            self.transport.abort()
            raise
        if self.tls_error is not None:
            raise self.tls_error

    async def wait_request(self, timeout: float) -> Request:
        """Wait for the HTTP upgrade request."""
        await self._wait(lambda: self.request is not None, timeout)
        return self.request

    def accept(self, path: str) -> None:
        """Answer the upgrade: 101, or 404 for another path; Closed if it was not a valid upgrade."""
        if self.request.path.split("?", 1)[0] != path:
            self.reject(404, f"no cluster endpoint at {self.request.path}\n")
            raise Closed(f"websocket upgrade for unknown path {self.request.path[:100]!r}")
        self.ws.send_response(self.ws.accept(self.request))
        self._flush()
        if self.ws.handshake_exc is not None:
            raise Closed(f"invalid websocket upgrade: {self.ws.handshake_exc}")

    def reject(self, status: int, text: str) -> None:
        """Answer the upgrade with an HTTP error; the connection then closes."""
        self.ws.send_response(self.ws.reject(status, text))
        self._flush()

    async def recv(self, timeout: float) -> str | bytes:
        """The next whole message; Closed when the connection ends, TimeoutError when idle too long."""
        await self._wait(lambda: bool(self._inbox), timeout)
        return self._inbox.popleft()

    def send(self, message: str | bytes) -> None:
        if self.closed:
            raise Closed(self._close_text())
        if isinstance(message, str):
            self.ws.send_text(message.encode())
        else:
            self.ws.send_binary(message)
        self._flush()

    @property
    def writable(self) -> bool:
        """The transport's buffer is below its high-water mark (a send will not pile up)."""
        return self._writable.is_set()

    async def drain(self, timeout: float) -> None:
        """Wait until the transport's buffer is below its high-water mark."""
        if self._writable.is_set():  # the usual case: no timer to arm (a push to thousands arms thousands)
            return
        async with asyncio.timeout(timeout):
            await self._writable.wait()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (or just close the transport before/after the websocket is open)."""
        if self.ws.state.name == "OPEN" and not self._lost:
            self.ws.send_close(code, reason[:120])
            self._flush()
        elif self.transport is not None and not self.transport.is_closing():
            self._flush()
            self.transport.close()
