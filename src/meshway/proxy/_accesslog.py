"""The access log: nginx "combined" format plus latencies, buffered (no syscall per request).

Line: `ip - - [time] "METHOD target HTTP/v" status bytes "referer" "user-agent" kong_ms upstream_ms request_ms`
where kong_ms is the proxy's own time before the upstream got the request, upstream_ms the wait
for the response head (`-` when there was no upstream) and request_ms the whole exchange.
Lines are flushed every second and when 64 KiB are pending.
"""
from __future__ import annotations

import time
from typing import Any

__all__ = ["AccessLog"]

_FLUSH_BYTES = 64 * 1024


class AccessLog:
    """Buffered writer of access lines; `path=None` turns it off."""

    def __init__(self, loop: Any, path: str | None):
        self.loop = loop
        self.file = open(path, "ab", buffering=0) if path else None
        self.pending: list[bytes] = []
        self.size = 0
        self._stamp_sec = -1
        self._stamp = b""
        self.timer = loop.call_later(1.0, self._tick) if self.file else None

    def _now(self) -> bytes:
        sec = int(time.time())
        if sec != self._stamp_sec:
            self._stamp_sec = sec
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(sec)).encode()
        return self._stamp

    def line(self, ex: Any) -> None:
        if self.file is None:
            return
        req = ex.req
        ua, ref = getattr(req, "ua", None), getattr(req, "referer", None)
        if ua is None or ref is None:  # a codec that does not pick them while parsing (HTTP/2)
            ua, ref = _pick(req.headers)
        now = self.loop.time()
        kong = (ex.t_sent or now) - ex.t0
        up = b"%d" % ((ex.t_headers - ex.t_sent) * 1000) if ex.t_headers else b"-"
        self._add(b'%s - - [%s] "%s %s HTTP/%s" %d %d "%s" "%s" %d %s %d\n' % (
            getattr(ex.server, "ip_b", None) or ex.server.client_ip.encode(), self._now(), req.method.encode(), req.url, req.version.encode(),
            ex.status, ex.sent_bytes, ref, ua, kong * 1000, up, (now - ex.t0) * 1000))

    def error_line(self, client_ip: str, status: int) -> None:
        if self.file is not None:
            self._add(b'%s - - [%s] "-" %d 0 "-" "-" 0 - 0\n' % (client_ip.encode(), self._now(), status))

    def _add(self, line: bytes) -> None:
        self.pending.append(line)
        self.size += len(line)
        if self.size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.file is not None:
            try:
                self.file.write(b"".join(self.pending))
            except OSError:
                pass
            self.pending.clear()
            self.size = 0

    def _tick(self) -> None:
        self.flush()
        self.timer = self.loop.call_later(1.0, self._tick)

    def close(self) -> None:
        self.flush()
        if self.timer is not None:
            self.timer.cancel()
        if self.file is not None:
            self.file.close()
            self.file = None


def _pick(headers: list) -> tuple[bytes, bytes]:
    ua = ref = b"-"
    for k, v in headers:
        low = k.lower()
        if low == b"user-agent":
            ua = v
        elif low == b"referer":
            ref = v
    return ua, ref
