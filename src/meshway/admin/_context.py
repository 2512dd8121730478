"""What every Admin API handler needs: the store (or the DB-less snapshot) and the node's info."""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool

from meshway.admin._http import MethodNotAllowed
from meshway.store import SnapshotView, Store

VERBS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}


@dataclasses.dataclass
class AdminContext:
    """The app's dependencies; `store` is None in DB-less mode, where `dbless` serves reads."""

    settings: Any
    store: Store | None
    dbless: Any
    node_info: dict[str, Any]
    config_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    def reader(self) -> Store | SnapshotView:
        return self.store if self.store is not None else SnapshotView(self.dbless.snapshot)

    def writer(self, method: str, collection: str) -> Store:
        if self.store is None:
            raise MethodNotAllowed(f"cannot {VERBS.get(method, 'update')} '{collection}' entities when not using a database")
        return self.store

    def snapshot(self) -> dict[str, Any]:
        return self.store.export_snapshot() if self.store is not None else self.dbless.snapshot

    async def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Store calls block on the database: run them off the event loop."""
        return await run_in_threadpool(fn, *args, **kw)
