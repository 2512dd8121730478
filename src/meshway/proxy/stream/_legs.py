"""The two ends of a relay, seen as plaintext pipes over a transport.

Rules:
- `receive(raw)` turns bytes read from the transport into plaintext (b"" when none yet);
  `write(plain)` and `write_eof()` go the other way. A plain leg passes bytes through.
- A TLS leg runs `ssl.SSLObject` over memory BIOs, so it can start from bytes already read
  (the preread ClientHello) and needs no second protocol object. Everything OpenSSL produces
  is written to the transport at once: backpressure stays on the transport's own buffer.
- TLS half-close: `write_eof()` sends close_notify then a TCP FIN, and keeps reading (TLS 1.3
  lets the peer go on sending); a peer's close_notify reads as EOF (`eof` becomes true).
- Plaintext written before the handshake completes is held and sent right after it.
- A TLS failure raises `TlsFailure` with OpenSSL's reason; the session closes and logs it.
"""
from __future__ import annotations

import asyncio
import ssl

_READ_CHUNK = 256 * 1024


class TlsFailure(Exception):
    """The TLS handshake or record layer failed; the message says why."""


class PlainLeg:
    """Bytes pass through unchanged."""

    tls = False
    handshaken = True
    peer_der: bytes | None = None

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.eof = False

    def receive(self, raw: bytes) -> bytes:
        return raw

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport.can_write_eof() and not self.transport.is_closing():
            self.transport.write_eof()


class TlsLeg:
    """TLS over an already-connected transport via memory BIOs (server or client side)."""

    tls = True

    def __init__(self, transport: asyncio.Transport, ctx: ssl.SSLContext, server_side: bool,
                 server_hostname: str | None = None) -> None:
        self.transport = transport
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._ssl = ctx.wrap_bio(self._in, self._out, server_side=server_side, server_hostname=server_hostname)
        self.handshaken = False
        self.eof = False
        self.peer_der: bytes | None = None
        self._held: list[bytes] = []
        self._eof_wanted = False

    @property
    def alpn(self) -> str | None:
        """The protocol ALPN chose, once the handshake is done."""
        return self._ssl.selected_alpn_protocol() if self.handshaken else None

    def start(self) -> None:
        """Client side: send the ClientHello now."""
        self._handshake()

    def receive(self, raw: bytes) -> bytes:
        self._in.write(raw)
        if not self.handshaken and not self._handshake():
            return b""
        return self._read_all()

    def write(self, data: bytes) -> None:
        if not self.handshaken:
            self._held.append(data)
            return
        self._call(self._ssl.write, data)
        self._flush()

    def write_eof(self) -> None:
        if not self.handshaken:
            self._eof_wanted = True
            return
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # close_notify is out; the peer's may come later
        except ssl.SSLError:
            pass  # the peer already went away: nothing left to say
        self._flush()
        # Nothing can follow close_notify, so the TCP FIN goes too: clients that wait on the
        # socket (ncat) would miss a close_notify that arrived together with the last data.
        if self.transport.can_write_eof() and not self.transport.is_closing():
            self.transport.write_eof()

    def _handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except (ssl.SSLError, ssl.CertificateError) as e:
            self._flush()  # deliver the alert
            raise TlsFailure(_reason(e)) from None
        self._handshake_done()
        return True

    def _handshake_done(self) -> None:
        self.handshaken = True
        self.peer_der = self._ssl.getpeercert(binary_form=True)
        self._flush()
        held, self._held = b"".join(self._held), []
        if held:
            self.write(held)
        if self._eof_wanted:
            self.write_eof()

    def _read_all(self) -> bytes:
        chunks = []
        while True:  # bounded: each pass consumes buffered records; WantRead ends it
            try:
                chunk = self._ssl.read(_READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            except ssl.SSLError as e:
                self._flush()
                raise TlsFailure(_reason(e)) from None
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
        self._flush()  # key updates, session tickets
        return b"".join(chunks)

    def _call(self, fn, data: bytes) -> None:
        try:
            fn(data)
        except ssl.SSLError as e:
            raise TlsFailure(_reason(e)) from None

    def _flush(self) -> None:
        pending = self._out.read()
        if pending and not self.transport.is_closing():
            self.transport.write(pending)


def _reason(e: Exception) -> str:
    return getattr(e, "reason", None) or getattr(e, "verify_message", None) or str(e) or type(e).__name__
