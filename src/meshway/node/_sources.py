"""Where a node's config comes from: a store, a declarative file, or a control plane.

Each source yields normalized snapshots (docs/snapshot.md) with their hash; the master pushes
whatever a source yields to its workers (and, on a control plane, to the data planes).
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Awaitable, Callable

from meshway.model import parse_declarative, snapshot_hash

log = logging.getLogger("meshway.node")

ApplyFn = Callable[[dict, str], Awaitable[float]]

EMPTY_DECLARATIVE = {"_format_version": "3.0"}


def empty_snapshot() -> dict:
    return parse_declarative(dict(EMPTY_DECLARATIVE))


def load_declarative_file(path: str) -> dict:
    """Parse a declarative config file; DeclarativeError names every bad path."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ValueError(f"cannot read declarative_config {path}: {e.strerror}") from None
    return parse_declarative(text)


class StorePoller:
    """Polls the store's change counter so that writes by any node reach this node's workers.
    On PostgreSQL a LISTEN connection wakes it as soon as another node commits a change
    (`meshway.store._notify`); the polling stays, for a notification lost meanwhile.

    Writes through this node's own Admin API do not wait for the next poll: `sync()` asks for a
    check now and returns once a check that *started after the call* is over. Checks run one at
    a time in one task, so a burst of writes coalesces: every `sync()` made while a check runs is
    served by the single check that follows it (one export, one compile per worker), never by
    one compile per write.
    """

    def __init__(self, store, interval: float, apply: ApplyFn, drop: tuple[str, ...] = ()) -> None:
        self._store = store
        # Collections the workers read from the database instead (a traditional node's oauth2
        # tokens, which its own proxy writes): left out of the snapshot and its hash.
        self._drop = drop
        self._interval = max(0.05, interval)
        self._apply = apply
        self._version: int | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._asked = 0  # sync() calls so far
        self._served = 0  # sync() calls a finished check has covered
        self._progress = asyncio.Event()
        self._listener = None  # PostgreSQL: LISTEN for the other nodes' writes (`store._notify`)

    async def initial(self) -> tuple[dict, str]:
        self._version = await asyncio.to_thread(self._store.version)
        return await asyncio.to_thread(self._export)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        if getattr(self._store, "dialect", None) == "postgresql":  # other nodes' writes wake us at once
            from meshway.store._notify import ChangeListener

            loop = asyncio.get_running_loop()
            self._listener = ChangeListener(self._store.engine, lambda: loop.call_soon_threadsafe(self._wake.set))
            self._listener.start()

    def poke(self) -> None:
        """Check now, without waiting (reload, `worker_consistency = eventual`)."""
        self._wake.set()

    async def sync(self, timeout: float) -> bool:
        """Check now and wait until the store's current state is applied (or failed to apply).

        False when `timeout` passed first; the check goes on and applies when it is done.
        """
        self._asked += 1
        ticket = self._asked
        self._wake.set()
        try:
            await asyncio.wait_for(self._served_at_least(ticket), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _served_at_least(self, ticket: int) -> None:
        while self._served < ticket:
            await self._progress.wait()

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            covered = self._asked  # every sync() made before this check started
            try:
                await self._check()
                if failing:
                    log.warning("database reachable again")
                failing = False
            except Exception as e:  # the database may come back; keep serving the last config
                if not failing:
                    log.error("cannot read configuration from the database: %s", e)
                failing = True
            self._served = covered
            self._progress.set()
            self._progress = asyncio.Event()

    async def _check(self) -> None:
        version = await asyncio.to_thread(self._store.version)
        if version == self._version:
            return
        snapshot, config_hash = await asyncio.to_thread(self._export)
        self._version = version
        await self._apply(snapshot, config_hash)

    def _export(self) -> tuple[dict, str]:
        # both in one thread: hashing 10,000 routes takes ~0.25 s the Admin API should not wait on
        snapshot = self._store.export_snapshot()
        for name in self._drop:
            snapshot[name] = []
        return snapshot, snapshot_hash(snapshot)

    async def stop(self) -> None:
        if self._listener is not None:
            await asyncio.to_thread(self._listener.stop)
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
