"""A bounded, batching send queue for log plugins (Kong's queue: same fields and defaults).

Rules:
- `add` never blocks and never raises: when `max_entries` (or `max_bytes`) is reached the
  entry is dropped and a line is logged (at most one line a second while dropping).
- A sender task runs only while there is work: it takes up to `max_batch_size` entries,
  waiting at most `max_coalescing_delay` seconds for a batch to fill, sends it, and exits
  when the queue is empty.
- A failed batch is retried with exponential backoff (`initial_retry_delay` doubling up to
  `max_retry_delay`) until `max_retry_time` has passed since its first try; then it is dropped
  with a log line.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("meshway.plugins")

Send = Callable[[list[bytes]], Awaitable[None]]


class QueueConfig(BaseModel):
    """Kong's `queue` record."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_batch_size: int = Field(default=1, ge=1, le=1_000_000)
    max_coalescing_delay: float = Field(default=1, ge=0, le=3600)
    max_entries: int = Field(default=10000, ge=1, le=1_000_000)
    max_bytes: int | None = None
    max_retry_time: float = 60
    initial_retry_delay: float = Field(default=0.01, ge=0.001, le=1_000_000)
    max_retry_delay: float = Field(default=60, ge=0.001, le=1_000_000)
    concurrency_limit: int = Field(default=1, ge=-1)


class BatchQueue:
    """Entries in, batches out to `send`, in the background."""

    def __init__(self, name: str, send: Send, conf: QueueConfig) -> None:
        self.name, self.send, self.conf = name, send, conf
        self.entries: collections.deque[bytes] = collections.deque()
        self.bytes = 0
        self.task: asyncio.Task | None = None
        self.wakeup: asyncio.Event | None = None
        self.dropped = 0
        self._last_drop_log = 0.0

    def add(self, entry: bytes) -> bool:
        """Queue one entry; False when it was dropped because the queue is full."""
        conf = self.conf
        if len(self.entries) >= conf.max_entries or (conf.max_bytes and self.bytes + len(entry) > conf.max_bytes):
            self.note_drop()
            return False
        self.entries.append(entry)
        self.bytes += len(entry)
        self.ensure_running()
        if len(self.entries) >= conf.max_batch_size and self.wakeup is not None:
            self.wakeup.set()
        return True

    def note_drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log >= 1.0:
            self._last_drop_log = now
            log.error("%s: queue full, dropping log entries (%d dropped so far)", self.name, self.dropped)

    def ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.wakeup = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        while self.entries:
            await self.coalesce()
            batch = self.take_batch()
            await self.deliver(batch)

    async def coalesce(self) -> None:
        """Wait for a full batch, at most max_coalescing_delay."""
        if len(self.entries) >= self.conf.max_batch_size or self.conf.max_coalescing_delay <= 0:
            return
        self.wakeup.clear()
        try:
            await asyncio.wait_for(self.wakeup.wait(), self.conf.max_coalescing_delay)
        except asyncio.TimeoutError:
            pass

    def take_batch(self) -> list[bytes]:
        n = min(len(self.entries), self.conf.max_batch_size)
        batch = [self.entries.popleft() for _ in range(n)]
        self.bytes -= sum(map(len, batch))
        return batch

    async def deliver(self, batch: list[bytes]) -> None:
        started, delay = time.monotonic(), self.conf.initial_retry_delay
        while True:
            try:
                await self.send(batch)
                return
            except Exception as e:  # any failure of the receiver: retry, then give up
                if time.monotonic() - started + delay > self.conf.max_retry_time:
                    log.error("%s: could not send %d entries, dropping them: %s", self.name, len(batch), e)
                    return
                log.warning("%s: send failed, retrying in %.3fs: %s", self.name, delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.conf.max_retry_delay)
