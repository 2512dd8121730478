"""Persistence of entities behind one interface: SQLite (embedded default) or PostgreSQL.

Public names: `open_store(settings) -> Store`, `Store` (CRUD, migrations, `version()`,
`export_snapshot()`, `import_snapshot()`), `SnapshotView` (the same reads over a snapshot, for
DB-less nodes), `StoreError`, `db_export(store, path)`, `db_import(store, path)`, `paginate`.
"""
from meshway.store._files import db_export, db_import
from meshway.store._open import engine_url, open_store
from meshway.store._query import paginate, parse_size
from meshway.store._store import Store, StoreError
from meshway.store._view import SnapshotView

__all__ = ["SnapshotView", "Store", "StoreError", "db_export", "db_import", "engine_url", "open_store", "paginate", "parse_size"]
