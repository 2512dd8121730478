"""Giving memory back once a burst of client connections has closed (issue 18, item 7).

Why memory stayed after the connections closed, measured on a worker after 1,000 slow readers:
- Each closed connection leaves reference cycles (the HTTP/1.1 protocol and its parser's bound
  callbacks, the exchange and its upstream connection and transports) that only the cyclic GC
  frees. The worker raises the GC thresholds (per-request garbage is freed by refcount, and a
  collection in the middle of traffic is a latency spike), so on an idle worker the full
  collection that would free them may never come: 1,000 closed connections kept ~37,000 objects.
- glibc keeps the pages of freed heap chunks (the 64 KiB response pieces, transport buffers)
  until `malloc_trim` gives them back.

So a timer, once a second (one comparison, off the request path), follows the number of open
client connections and their peak since the last release; when they have fallen to a quarter of
that peak, and by at least `RELEASE_MIN`, it runs one full collection and `malloc_trim(0)`
(~10 ms after 1,000 connections, once per burst). What stays is described in bench/README.md
("Memory per connection"): pymalloc pools of arenas that a few long-lived objects still use.
"""
from __future__ import annotations

import gc
import logging
from typing import Any, Callable

log = logging.getLogger("meshway.proxy")

INTERVAL = 1.0  # seconds between two looks at the connection count
RELEASE_MIN = 64  # connections that must have closed since the peak before a release is worth it


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None elsewhere (musl has none; its free pages go back by themselves).
    The compiled `_core._heap` where it is built: ctypes is ~0.35 MiB of an idle worker's memory."""
    try:
        from ._core import _heap

        if _heap.HAS_MALLOC_TRIM:
            return _heap.malloc_trim
    except ImportError:  # not built: the ctypes path below
        pass
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


class MemoryKeeper:
    """Releases memory after the open connections fall well below their peak."""

    def __init__(self, loop: Any, count: Callable[[], int]):
        self.loop = loop
        self.count = count
        self.peak = 0
        self.releases = 0
        # Looked up now (ctypes, ~0.4 MiB, where `_core._heap` is not built): imported at the first
        # release, its objects would land in the arenas the burst just emptied and keep them from going back.
        self._trim = _malloc_trim()
        self.handle = loop.call_later(INTERVAL, self._tick)

    def _tick(self) -> None:
        now = self.count()
        if now > self.peak:
            self.peak = now
        elif self.peak - now >= RELEASE_MIN and now * 4 <= self.peak:
            self.release()
            self.peak = now
        self.handle = self.loop.call_later(INTERVAL, self._tick)

    def release(self) -> None:
        """One full collection, then glibc's free pages back to the system."""
        freed = gc.collect()
        if self._trim is not None:
            self._trim(0)
        self.releases += 1
        log.debug("memory released after connections fell from %d: %d objects freed", self.peak, freed)

    def stop(self) -> None:
        self.handle.cancel()
