"""Accepting a listening socket's connections in batches.

uvloop's server (libuv) takes one pending connection per turn of the event loop. On a busy
worker a turn lasts milliseconds, so a burst of new connections (clients reconnecting after a
deploy, a load balancer opening its pool) waits in the kernel's accept queue: with 1,000 new
connections to a loaded worker the last ones were accepted after more than a second, while
nginx took them in 70 ms. `Acceptor` instead drains up to `BATCH` connections each time the
socket is readable, then hands each to uvloop (`connect_accepted_socket`, which runs the TLS
handshake for `ssl` listeners), driving that coroutine without a task (see `_serve`).

Rules:
- A batch stops early when the queue is empty; what is left is taken on the next turn.
- Out of file descriptors (EMFILE/ENFILE): accepting pauses for `EMFILE_PAUSE` seconds, so
  the readable socket does not spin the loop; the error is logged once per pause.
- A connection that fails before its protocol starts (a TLS handshake that fails or times
  out) is closed by uvloop (or the compiled TLS transport) and logged at debug level here.
- With `tls` (`tls_impl = compiled`: the `_core._tlssock` module and the listener's SNI
  chooser) a TLS connection's transport is made at once, in C: no task per connection.
"""
from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from typing import Any, Callable

__all__ = ["Acceptor", "BATCH"]

log = logging.getLogger("meshway.proxy")

BATCH = 128
EMFILE_PAUSE = 0.1
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


_ACCEPTED: dict[int, type] = {}


def _accepted_class(family: socket.AddressFamily) -> type:
    """A socket class whose `family` and `type` are class attributes (the same enum members):
    uvloop's connect_accepted_socket reads both, and socket.socket's properties build the enum at
    every read (with socket.accept()'s own reads, five enum calls a connection: ~18k instructions
    of a warm burst's ~154k per connection, bench/burst_micro.py)."""
    cls = _ACCEPTED.get(family)
    if cls is None:
        cls = _ACCEPTED[family] = type("AcceptedSocket", (socket.socket,),
                                       {"__slots__": (), "family": family, "type": socket.SOCK_STREAM})
    return cls


class Acceptor:
    """Serves `sock` (bound, listening, non-blocking) with `factory` protocols; `close()` stops."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Callable[[], Any], *,
                 ssl: Any = None, ssl_handshake_timeout: float | None = None, tls: Any = None) -> None:
        self.loop = loop
        self.sockets = [sock]  # as asyncio.Server's, for callers that read the address
        self._sock = sock
        self._family = sock.family
        self._accepted = _accepted_class(sock.family)  # (a socket.socket: uvloop detaches it on close)
        self._factory = factory
        self._ssl = ssl
        self._handshake_timeout = ssl_handshake_timeout if ssl is not None else None
        self._tls = tls  # (the _tlssock module, choose) for the compiled transport
        self._closed = False
        self._resume: asyncio.TimerHandle | None = None
        loop.add_reader(sock.fileno(), self._ready)

    def _ready(self) -> None:
        accept, serve = self._sock._accept, self._serve  # _accept: the descriptor and address alone
        family, accepted = self._family, self._accepted
        for _ in range(BATCH):
            try:
                fd, _ = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno == errno.ECONNABORTED:  # the client gave up while queued
                    continue
                if e.errno in _OUT_OF_FILES:
                    log.error("cannot accept on %s: %s; pausing accepts for %.1f s",
                              self._sock.getsockname(), e, EMFILE_PAUSE)
                    self._pause()
                    return
                log.error("accept on %s failed: %s", self._sock.getsockname(), e)
                return
            conn = accepted(family, socket.SOCK_STREAM, 0, fd)
            if self._tls is not None:
                self._serve_compiled(conn)
            else:  # non-blocking and TCP_NODELAY: uvloop's transport sets both
                serve(conn)

    def _serve_compiled(self, conn: socket.socket) -> None:
        core, choose = self._tls
        try:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as uvloop's TCP transports
            core.TLSTransport(self.loop, conn, self._ssl, self._factory, choose, self._handshake_timeout, self._dropped)
        except Exception as e:  # SSL_new failed (out of memory): nothing owns the socket yet
            conn.close()
            self._dropped(e)

    def _dropped(self, exc: BaseException) -> None:
        log.debug("connection on %s dropped before it started: %r", self._sock.getsockname(), exc)

    def _serve(self, conn: socket.socket) -> None:
        """uvloop makes the transport (and runs the TLS handshake of `ssl` listeners) in its
        `connect_accepted_socket` coroutine. It is driven here, without a task: it waits once, for
        the protocol's start (or the handshake), and resuming it from that future's callback is all
        a task would do, at the cost of a Task, its registry entry and one more loop callback."""
        self._step(self.loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl,
                                                     ssl_handshake_timeout=self._handshake_timeout))

    def _step(self, coro: Any, _waited: Any = None) -> None:
        try:
            waiter = coro.send(None)
        except StopIteration:
            return
        except (OSError, asyncio.TimeoutError, asyncio.CancelledError) as e:  # ssl.SSLError is an OSError
            # uvloop owns the socket from the start and has closed it (closing it here as well
            # could close a descriptor number already reused by another connection)
            log.debug("connection on %s dropped before it started: %r", self._sock.getsockname(), e)
            return
        if waiter is None:  # a bare yield: the next turn, as a task would
            self.loop.call_soon(self._step, coro)
        else:
            waiter.add_done_callback(functools.partial(self._step, coro))

    def _pause(self) -> None:
        self.loop.remove_reader(self._sock.fileno())
        self._resume = self.loop.call_later(EMFILE_PAUSE, self._unpause)

    def _unpause(self) -> None:
        self._resume = None
        if not self._closed:
            self.loop.add_reader(self._sock.fileno(), self._ready)

    def close(self) -> None:
        """Stop accepting (connections already accepted are not touched) and close the socket."""
        if self._closed:
            return
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
        else:
            self.loop.remove_reader(self._sock.fileno())
        self._sock.close()
