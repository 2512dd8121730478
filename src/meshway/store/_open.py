"""Engine construction from node settings."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, create_engine, event

from meshway.store._store import Store, StoreError


def engine_url(settings: Any) -> URL:
    """`sqlite:///<sqlite_path>` or `postgresql+psycopg://...` from `pg_*` settings."""
    if settings.database == "postgres":
        return URL.create("postgresql+psycopg", username=settings.pg_user, password=settings.pg_password or None,
                          host=settings.pg_host, port=settings.pg_port, database=settings.pg_database)
    if settings.database == "sqlite":
        return URL.create("sqlite", database=str(settings.sqlite_path))
    raise StoreError(f"no store when database = {settings.database!r}")


def open_store(settings: Any, *, bootstrap: bool = False) -> Store:
    """A Store for the node's settings; `bootstrap=True` creates the schema when missing."""
    url = engine_url(settings)
    if url.drivername == "sqlite":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        timeout = max(1, int(getattr(settings, "pg_timeout", 5000)) // 1000)
        engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": timeout})
    store = Store(engine)
    store.config_entries.datacenter = getattr(settings, "datacenter", "dc1")  # named in the snapshot's `zones`
    if bootstrap and not store.migrations_status()["bootstrapped"]:
        store.bootstrap()
    return store


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys = ON")  # ON DELETE CASCADE / RESTRICT from the declarations
    cur.execute("PRAGMA journal_mode = WAL")  # readers do not block the writer
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.close()
