"""proxy-cache's memory strategy: one store per node, shared by every worker (Kong's `ngx.shared` dict).

Rules:
- One SQLite file per dictionary, `<prefix>/shm/cache/<dictionary_name>.sqlite`, opened by every
  worker of the node and by the node's Admin API. The master empties `<prefix>/shm` when the node
  starts, so a node starts with an empty cache, as Kong's shared dicts do. WAL journal, no fsync
  (`synchronous=OFF`): the pages stay in the page cache, and a crash loses only a cache.
- Bounded as a shared dict of that size: the live entries' sizes (key + metadata + body) never sum
  past `limit` bytes. A store that would go over deletes expired entries, then the oldest ones
  (Kong's shared dict evicts the least recently used; we evict the least recently stored, which
  needs no write on a hit). An entry larger than the whole dictionary is not stored.
- Readers never wait (WAL). A writer waits at most `BUSY_MS` for another worker's write; past that
  the response is simply not cached (logged), never an error and never a stalled worker.
- Without a node (unit tests) the store is an in-memory database of this process.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("meshway.plugins")

BUSY_MS = 50
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, expires REAL NOT NULL, stored REAL NOT NULL,
                                    size INTEGER NOT NULL, meta TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires);
CREATE INDEX IF NOT EXISTS entries_stored ON entries (stored);
CREATE TABLE IF NOT EXISTS usage (id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL);
INSERT OR IGNORE INTO usage VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS entries_in AFTER INSERT ON entries
  BEGIN UPDATE usage SET total = total + NEW.size WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS entries_out AFTER DELETE ON entries
  BEGIN UPDATE usage SET total = total - OLD.size WHERE id = 1; END;
"""


class CacheStore:
    """Expiring entries (metadata dict + body bytes) in one bounded, node-wide database."""

    def __init__(self, path: Path | None, limit: int) -> None:
        self.path = path
        self.limit = limit
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        db = self._db
        if db is None:
            with self._lock:
                if self._db is None:
                    self._db = _connect(self.path)
                db = self._db
        return db

    def fetch(self, key: str, now: float) -> tuple[dict[str, Any], bytes] | None:
        """The live entry under `key`, or None."""
        row = self._conn().execute("SELECT meta, body FROM entries WHERE key = ? AND expires > ?",
                                   (key, now)).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), bytes(row[1])

    def store(self, key: str, meta: dict[str, Any], body: bytes, ttl: float, now: float, only_new: bool = False) -> bool:
        """Keep the entry for `ttl` seconds; False when it cannot be stored (too big, busy) or, with
        `only_new` (a shared dict's `add`: atomic across workers), when a live entry is there."""
        text = json.dumps(meta, separators=(",", ":"))
        size = len(key) + len(text) + len(body)
        if size > self.limit or ttl <= 0:
            return False
        db = self._conn()
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                if only_new and db.execute("SELECT 1 FROM entries WHERE key = ? AND expires > ?", (key, now)).fetchone():
                    return False
                db.execute("DELETE FROM entries WHERE key = ? OR expires <= ?", (key, now))
                db.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", (key, now + ttl, now, size, text, body))
                self._evict(db)
        except sqlite3.OperationalError as e:  # another worker holds the write lock past BUSY_MS
            log.info("proxy-cache: not storing %s: %s", key, e)
            return False
        return True

    def _evict(self, db: sqlite3.Connection) -> None:
        """The oldest entries go until the dictionary fits in its size again."""
        (total,) = db.execute("SELECT total FROM usage WHERE id = 1").fetchone()
        while total > self.limit:
            rows = db.execute("SELECT key, size FROM entries ORDER BY stored LIMIT 64").fetchall()
            if not rows:
                break
            for key, size in rows:
                db.execute("DELETE FROM entries WHERE key = ?", (key,))
                total -= size
                if total <= self.limit:
                    break

    def keys_with_prefix(self, prefix: str, now: float) -> list[str]:
        """The live keys starting with `prefix`, in order."""
        rows = self._conn().execute("SELECT key FROM entries WHERE key >= ? AND key < ? AND expires > ? ORDER BY key",
                                    (prefix, prefix + "\U0010ffff", now)).fetchall()
        return [key for (key,) in rows]

    def purge(self, key: str) -> bool:
        """Delete one entry; True when it was there."""
        db = self._conn()
        with db:
            return db.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount > 0

    def flush(self) -> None:
        db = self._conn()
        with db:
            db.execute("DELETE FROM entries")

    def used(self) -> int:
        return self._conn().execute("SELECT total FROM usage WHERE id = 1").fetchone()[0]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _connect(path: Path | None) -> sqlite3.Connection:
    if path is None:
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), timeout=BUSY_MS / 1000, check_same_thread=False, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {BUSY_MS * 20}")  # only while creating: several workers at once
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")
    db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
    db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
    # `with db:` commits what BEGIN IMMEDIATE opened: Python's own transaction handling is off.
    return _Autocommit(db)


class _Autocommit:
    """A connection whose `with` block commits (or rolls back) an explicit BEGIN."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def __enter__(self) -> "_Autocommit":
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK" if kind is not None else "COMMIT")

    def close(self) -> None:
        self.db.close()


# ---- the stores of this process, by dictionary ------------------------------------------------

_stores: dict[tuple[Path | None, str], CacheStore] = {}
_stores_lock = threading.Lock()


def cache_store(directory: Path | None, dictionary: str, limit: int) -> CacheStore:
    """The store of `dictionary` under the node's shared-memory `directory` (None: in-process)."""
    key = (directory, dictionary)
    store = _stores.get(key)
    if store is None:
        with _stores_lock:
            store = _stores.get(key)
            if store is None:
                path = None if directory is None else directory / "cache" / f"{dictionary}.sqlite"
                store = _stores[key] = CacheStore(path, limit)
    return store
