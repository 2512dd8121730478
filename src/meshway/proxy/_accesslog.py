"""The access log: nginx "combined" format plus latencies, buffered (no syscall per request).

Line: `ip - - [time] "METHOD target HTTP/v" status bytes "referer" "user-agent" kong_ms upstream_ms request_ms`
where kong_ms is the proxy's own time before the upstream got the request, upstream_ms the wait
for the response head (`-` when there was no upstream) and request_ms the whole exchange.
Request data in a line (target, referer, user agent) has `"`, `\\` and bytes outside printable
ASCII written as `\\xHH`, as nginx does, so a client cannot forge fields or lines.
Lines are flushed every second and when 64 KiB are pending. The time stamp is refreshed by the
same once-a-second timer (nginx caches its time per event-loop turn for the same reason), so it
may lag by up to a second under a busy loop.
"""
from __future__ import annotations

import re
import time
from typing import Any

from ._core import access_formatter, h1_access_formatter

__all__ = ["AccessLog"]

_FLUSH_BYTES = 64 * 1024
# Bytes of the usual methods and versions: a dict probe instead of an encode per line.
_METHODS = {m: m.encode() for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0", "2": b"2", "2.0": b"2.0"}
_UNSAFE = re.compile(rb'[^\x20\x21\x23-\x5b\x5d-\x7e]')
# bytes.translate with this table returns its argument itself when every byte is safe (it maps
# each safe byte to itself and each unsafe one elsewhere): one C pass, no regex.
_SAME_IF_SAFE = bytes(b if 0x20 <= b < 0x7F and b not in b'"\\' else (1 if b == 0 else 0) for b in range(256))
_KNOWN_SAFE_MAX = 4096  # targets, user agents and referers found safe (bounded: client-controlled)


def _escape(value: bytes) -> bytes:
    return _UNSAFE.sub(lambda m: b"\\x%02X" % m.group(0)[0], value)


class AccessLog:
    """Buffered writer of access lines; `path=None` turns it off."""

    def __init__(self, loop: Any, path: str | None):
        self.loop = loop
        self.file = open(path, "ab", buffering=0) if path else None
        self.pending: list[bytes] = []
        self.safe: dict[bytes, None] = {b"-": None}  # clients repeat targets and user agents: a dict probe
        self.size = 0
        self._stamp_sec = -1
        self._stamp = b""
        self.timer = loop.call_later(1.0, self._tick) if self.file else None
        self.fmt = access_formatter()  # the line in C (`_core`), None: the Python format below
        self.fmt_h1 = h1_access_formatter()
        self.observe: Any = None  # the mesh's per-request metrics (`observe_exchange`), set per config
        self._now()

    def _now(self) -> bytes:
        sec = int(time.time())
        if sec != self._stamp_sec:
            self._stamp_sec = sec
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(sec)).encode()
        return self._stamp

    def line(self, ex: Any, now: float | None = None) -> None:
        """Log an exchange; `now` is the caller's loop.time() if it has one (saves a clock read)."""
        if self.observe is not None:  # only on a data plane whose mesh counts per service
            self.observe(ex, now)
        if self.file is None:
            return
        if now is None:
            now = self.loop.time()
        # The stamp is refreshed by the once-a-second flush timer, as nginx caches its time.
        self._add(self._line(ex, now))

    def h1_line(self, ex: Any, now: float) -> None:
        """`line` for an HTTP/1.1 exchange (`_exchange.Exchange`) that completed: its request
        picked User-Agent and Referer while parsing and its server has `ip_b`, so the C format
        (`_core`) takes its fields as they are, without `line`'s lookups (~2k instructions)."""
        if self.observe is not None:  # only on a data plane whose mesh counts per service
            self.observe(ex, now)
        if self.file is None:
            return
        fmt = self.fmt_h1
        server = ex.server
        line = None
        if fmt is not None and ex.mesh_peer is None and server.mesh_peer is None:
            req = ex.req
            line = fmt(server.ip_b, self._stamp, req.method, req.url, req.version, ex.status, ex.sent_bytes,
                       req.referer, req.ua, ex.t0, ex.t_sent, ex.t_headers, now)
        if line is None:
            line = self._line(ex, now)
        self.pending.append(line)  # `_add`, inlined: this runs once per request
        self.size += len(line)
        if self.size >= _FLUSH_BYTES:
            self.flush()

    def _line(self, ex: Any, now: float) -> bytes:
        """The line of any exchange (HTTP/2 streams, mesh hops, fields with bytes to escape)."""
        req = ex.req
        ua, ref = getattr(req, "ua", None), getattr(req, "referer", None)
        if ua is None or ref is None:  # a codec that does not pick them while parsing (HTTP/2)
            ua, ref = _pick(req.headers)
        server = ex.server
        url, ip = req.url, getattr(server, "ip_b", None) or server.client_ip.encode()
        method = _METHODS.get(req.method) or req.method.encode()
        version = _VERSIONS.get(req.version) or req.version.encode()
        mesh = _mesh_fields(ex) if getattr(ex, "mesh_peer", None) or getattr(server, "mesh_peer", None) else b""
        fmt = self.fmt  # the line in C (`_core`); None when off, or for a field with a byte to escape
        line = fmt(ip, self._stamp, method, url, version, ex.status, ex.sent_bytes, ref, ua, ex.t0, ex.t_sent,
                   ex.t_headers, now, mesh) if fmt is not None else None
        if line is None:
            safe = self.safe
            if (url not in safe and not self._learn(url)) or (ua not in safe and not self._learn(ua)) \
                    or (ref not in safe and not self._learn(ref)):
                url, ref, ua = _escape(url), _escape(ref), _escape(ua)
            line = _py_line(ip, self._stamp, method, url, version, ex.status, ex.sent_bytes, ref, ua, ex.t0, ex.t_sent,
                            ex.t_headers, now, mesh)
        return line

    def _add(self, line: bytes) -> None:
        self.pending.append(line)
        self.size += len(line)
        if self.size >= _FLUSH_BYTES:
            self.flush()

    def _learn(self, value: bytes) -> bool:
        """Whether `value` may go into a line as is; remembered when it may."""
        if value.translate(_SAME_IF_SAFE) is not value:
            return False
        if len(self.safe) >= _KNOWN_SAFE_MAX:
            self.safe = {b"-": None}
        self.safe[value] = None
        return True

    def error_line(self, client_ip: str, status: int) -> None:
        if self.file is not None:
            self._add(b'%s - - [%s] "-" %d 0 "-" "-" 0 - 0\n' % (client_ip.encode(), self._now(), status))

    def flush(self) -> None:
        if self.pending and self.file is not None:
            try:
                self.file.write(b"".join(self.pending))
            except OSError:
                pass
            self.pending.clear()
            self.size = 0

    def _tick(self) -> None:
        self._now()
        self.flush()
        self.timer = self.loop.call_later(1.0, self._tick)

    def close(self) -> None:
        self.flush()
        if self.timer is not None:
            self.timer.cancel()
        if self.file is not None:
            self.file.close()
            self.file = None


def _py_line(ip: bytes, stamp: bytes, method: bytes, url: bytes, version: bytes, status: int, sent: int, ref: bytes,
             ua: bytes, t0: float, t_sent: float, t_headers: float, now: float, mesh: bytes) -> bytes:
    """The line from fields already escaped (the reference format; `_core._fmt.access_line`
    makes the same bytes in C from fields that need no escaping)."""
    up = b"%d" % ((t_headers - t_sent) * 1000) if t_headers else b"-"
    return b'%s - - [%s] "%s %s HTTP/%s" %d %d "%s" "%s" %d %s %d%s\n' % (
        ip, stamp, method, url, version, status, sent, ref, ua, ((t_sent or now) - t0) * 1000, up, (now - t0) * 1000, mesh)


def _mesh_fields(ex: Any) -> bytes:
    """` mtls=yes peer=<spiffe id>` on a mesh hop (the upstream sidecar's, else the client sidecar's)."""
    peer = getattr(ex, "mesh_peer", None) or getattr(ex.server, "mesh_peer", None)
    return b" mtls=yes peer=%s" % peer.encode() if peer else b""


def _pick(headers: list) -> tuple[bytes, bytes]:
    ua = ref = b"-"
    for k, v in headers:
        low = k.lower()
        if low == b"user-agent":
            ua = v
        elif low == b"referer":
            ref = v
    return ua, ref
