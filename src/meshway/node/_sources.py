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
    """Polls the store's change counter so that writes by any node reach this node's workers."""

    def __init__(self, store, interval: float, apply: ApplyFn) -> None:
        self._store = store
        self._interval = max(0.05, interval)
        self._apply = apply
        self._version: int | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    async def initial(self) -> tuple[dict, str]:
        self._version = await asyncio.to_thread(self._store.version)
        snapshot = await asyncio.to_thread(self._store.export_snapshot)
        return snapshot, snapshot_hash(snapshot)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def poke(self) -> None:
        """Check now (after a write through this node's Admin API)."""
        self._wake.set()

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._check()
                if failing:
                    log.warning("database reachable again")
                failing = False
            except Exception as e:  # the database may come back; keep serving the last config
                if not failing:
                    log.error("cannot read configuration from the database: %s", e)
                failing = True

    async def _check(self) -> None:
        version = await asyncio.to_thread(self._store.version)
        if version == self._version:
            return
        snapshot = await asyncio.to_thread(self._store.export_snapshot)
        self._version = version
        await self._apply(snapshot, snapshot_hash(snapshot))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
