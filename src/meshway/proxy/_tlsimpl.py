"""Which transport carries a TLS listener's connections: OpenSSL on the socket, or uvloop's `ssl`.

`tls_impl` (setting, env MESHWAY_TLS_IMPL): `compiled` = `_core._tlssock`, a transport that
drives OpenSSL on the non-blocking socket from C (handshake, SSL_read/SSL_write under the
loop's add_reader/add_writer: no Python per TLS record); `python` = uvloop's SSL transport
over `ssl` memory BIOs (the reference, and the fallback where the extension is not built);
`auto` (default) = compiled when it imports and reads Python's contexts correctly
(`_tlssock.layout_ok`). Both serve the same contexts (`meshway.proxy._tls`: policy,
certificates by SNI, ALPN, `certificate` plugin phases).

Rules:
- A sidecar's inbound listener with mesh mTLS stays on the `ssl` path: its SNI callback swaps
  in the mesh context, asks for an optional client certificate and checks the peer's SPIFFE id
  on `ssl.SSLObject`. Upstream (client) TLS and stream listeners are not served here either.
- Kernel TLS: the compiled transport asks OpenSSL to hand records to the kernel
  (SSL_OP_ENABLE_KTLS) only when `kernel_tls()` found the `tls` upper-layer protocol on a TCP
  socket; a kernel built without CONFIG_TLS answers ENOENT and records stay in OpenSSL. The
  memory-BIO path can never use kTLS (OpenSSL needs the socket for it).
"""
from __future__ import annotations

import errno
import logging
import socket
from typing import Any

__all__ = ["available", "kernel_tls", "resolve", "select"]

log = logging.getLogger("meshway.proxy")

try:
    from ._core import _tlssock
except ImportError:  # not built (no compiler or no libssl headers at install time)
    _tlssock = None  # type: ignore[assignment]

_LAYOUT: list[bool] = []  # [whether `_tlssock` reads this Python's contexts], checked on first use
TCP_ULP = getattr(socket, "TCP_ULP", 31)  # linux/tcp.h; the socket module lacks the name before 3.12
_ACTIVE: list[Any] = [None]  # this process's choice: the `_tlssock` module or None


def available() -> bool:
    if not _LAYOUT:
        # on first use, not at import: the check creates an SSL_CTX, and a worker without TLS
        # listeners never needs one (~0.8 MiB of its memory: OpenSSL's tables and libssl pages)
        _LAYOUT.append(_tlssock is not None and _tlssock.layout_ok())
    return _LAYOUT[0]


def resolve(impl: str) -> Any:
    """The compiled transport module for `tls_impl`, or None for the `ssl` path."""
    if impl == "python":
        return None
    ok = available()
    if impl == "auto" and not ok:
        return None
    if not ok:
        why = "is not built (reinstall with a C compiler and libssl-dev)" if _tlssock is None else \
            "cannot read this Python's ssl.SSLContext (its _ssl module links another OpenSSL)"
        raise RuntimeError(f"tls_impl = compiled, but meshway.proxy._core._tlssock {why}; set tls_impl = auto")
    return _tlssock


def select(impl: str) -> Any:
    """Set the process's `tls_impl` (once per worker, before its listeners start); logs the choice."""
    core = _ACTIVE[0] = resolve(impl)
    if core is None:
        log.debug("TLS listeners: uvloop's ssl transport (tls_impl = %s)", impl)
        return None
    ktls, why = kernel_tls()
    core.use_kernel_tls(ktls)
    log.debug("TLS listeners: OpenSSL on the socket; kernel TLS %s", "on" if ktls else f"off ({why})")
    return core


def active() -> Any:
    return _ACTIVE[0]


def kernel_tls() -> tuple[bool, str]:
    """Whether this kernel offers kTLS: set the `tls` ULP on a connected loopback TCP socket, the
    step OpenSSL takes; ENOENT means the kernel has no TLS module (CONFIG_TLS unset)."""
    srv = cli = acc = None
    try:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        cli = socket.socket()  # not create_connection: its getaddrinfo loads the idna codec (~0.2 MiB)
        cli.settimeout(1)
        cli.connect(srv.getsockname())
        acc, _ = srv.accept()
        cli.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
        return True, "the kernel's tls ULP is available"
    except OSError as e:
        if e.errno == errno.ENOENT:
            return False, "the kernel has no tls ULP (CONFIG_TLS not set)"
        return False, f"probe failed: {e}"
    finally:
        for s in (acc, cli, srv):
            if s is not None:
                s.close()
