"""The data planes' configuration acknowledgements, counted in memory and written in batches.

Every push is acknowledged by every data plane: one database job per `applied` would queue
thousands of jobs per change at scale, and the Admin API's own calls (the next change) would wait
behind them. So the counts (Kuma's `responsesSent/Acknowledged/Rejected` of a subscription) are
kept here and written every FLUSH seconds in one job of a few transactions, as Kuma flushes its
DataplaneInsights periodically (`dataplaneStatusFlushInterval`, kuma#1237: 10 s; ours is shorter
since `inspect dataplanes` is read by people waiting for a change). Lifecycle changes (connect,
disconnect, health, certificate) stay immediate and in order: only counters are deferred, and
adding counts commutes with them. A Dataplane deleted meanwhile is not brought back.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, Callable

from . import _insights

log = logging.getLogger("meshway.mesh")
FLUSH = 1.0  # seconds between writes of the counters
CHUNK = 500  # data planes per transaction: the store's lock is not held for long at a time


class AckCounts:
    """Pending counts per data plane and subscription; one flusher task while there are some."""

    def __init__(self, store: Any, spawn: Callable[[Any], asyncio.Task]) -> None:
        self._store = store
        self._spawn = spawn
        self._pending: dict[tuple[str, str], dict[str, Counter]] = {}
        self._flusher: asyncio.Task | None = None

    def count(self, mesh: str, name: str, sub: str, event: str) -> None:
        """One configuration sent and `acknowledged` or `rejected` on subscription `sub`."""
        counts = self._pending.setdefault((mesh, name), {}).setdefault(sub, Counter())
        counts["sent"] += 1
        counts[event] += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = self._spawn(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._pending:
            await asyncio.sleep(FLUSH)
            pending, self._pending = self._pending, {}
            try:
                await asyncio.to_thread(self._write, pending)
            except Exception as e:  # insights are status: the counts are lost, the sessions go on
                log.warning("cannot record the configuration acknowledgements of %d data plane(s): %s",
                            len(pending), e)

    def _write(self, pending: dict[tuple[str, str], dict[str, Counter]]) -> None:
        keys = sorted(pending)
        for at in range(0, len(keys), CHUNK):
            self._store.mesh.update_insights({key: _changer(pending[key]) for key in keys[at:at + CHUNK]})


def _changer(by_sub: dict[str, Counter]):
    def change(insight: dict) -> dict:
        for sub, counts in by_sub.items():
            insight = _insights.config_events(insight, sub, dict(counts))
        return insight

    return change
