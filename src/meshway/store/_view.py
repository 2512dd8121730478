"""Read-only store interface over a snapshot: what the Admin API serves in DB-less mode."""
from __future__ import annotations

import uuid
from typing import Any

from meshway.model import ENTITIES, NotFound
from meshway.store._query import paginate

Parent = tuple[str, str]


class SnapshotView:
    """`list`/`find`/`get` over a normalized snapshot, with the Store's semantics."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot

    def _rows(self, collection: str, parent: Parent | None) -> list[dict]:
        rows = sorted(self.snapshot.get(collection) or [], key=lambda r: r["id"])
        if parent:
            rows = [r for r in rows if (r.get(parent[0]) or {}).get("id") == parent[1]]
        return rows

    def list(self, collection: str, *, size: Any = None, offset: str | None = None, tags: str | None = None,
             parent: Parent | None = None) -> tuple[list[dict], str | None]:
        return paginate(self._rows(collection, parent), size=size, offset=offset, tags=tags)

    def find(self, collection: str, key: str, *, parent: Parent | None = None) -> dict | None:
        field = _key_field(collection, key)
        if field is None:
            return None
        value = str(uuid.UUID(key)) if field == "id" else key
        return next((r for r in self._rows(collection, parent) if r.get(field) == value), None)

    def get(self, collection: str, key: str, *, parent: Parent | None = None) -> dict:
        found = self.find(collection, key, parent=parent)
        if found is None:
            raise NotFound()
        return found

    def export_snapshot(self) -> dict[str, Any]:
        return self.snapshot


def _key_field(collection: str, key: str) -> str | None:
    from meshway.store._store import is_uuid

    return "id" if is_uuid(key) else ENTITIES[collection].endpoint_key
