"""The tokens and authorization codes the oauth2 plugin issues: in the node's database, as Kong's.

Rules:
- A node with a database (traditional) keeps them in its store, as Kong does: `oauth2_tokens`
  rows (so `GET|DELETE /oauth2_tokens` on the Admin API see them, and every node on that
  database accepts them) and `oauth2_authorization_codes` rows (no Admin API, never exported).
  Workers reach the database the way `policy: cluster` counters do (`_cluster_counters.NodePg`:
  one autocommit PostgreSQL connection per worker); on SQLite a worker opens the store's file
  (WAL: reads never wait for a writer; writes run in a thread, the master may hold the lock).
- A node without a database (DB-less, a hybrid data plane) cannot write them: as in Kong, only
  the tokens of its declarative config are good there, and issuing or refreshing one fails
  (`NoDatabase`, a 500 as Kong's failed insert).
- Proxy-written rows carry Kong's `ttl` (unix seconds): a token lives `refresh_token_ttl`
  seconds when tokens expire, a code 300 s. A row past it is not used; such rows are deleted
  now and then by the worker that writes.
- A code is used once: `take_code` deletes it and only the caller whose delete returned the row
  gets it. A refreshed token is deleted the same way, so a refresh token works once.
- Token lookups are cached per worker for CACHE_TTL seconds, misses included (Kong caches them
  in its node cache). A database change (an Admin API write on any node moves the store's
  version) empties the cache at once: the master tells its workers (`database_changed`). A
  token deleted by a refresh on another worker or node can be accepted here until its entry
  ages out (Kong's other nodes hear of a delete after db_update_frequency, 5 s by default).
- Outside a node (unit tests) the database is an SQLite database in this process's memory.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from typing import Any

from meshway.plugins import on_database_change
from meshway.plugins.bundled import _cluster_counters
from meshway.plugins.bundled._cluster_counters import NodePg

CACHE_TTL = 5.0
CACHE_MAX = 10_000
SWEEP_EVERY = 60.0
TOKEN_COLUMNS = "id, created_at, updated_at, access_token, refresh_token, service_id, credential_id, cache_key, body, ttl"
CODE_COLUMNS = "id, code, credential_id, service_id, plugin_id, created_at, ttl, body"
SQL = {
    "token": "SELECT body, ttl FROM oauth2_tokens WHERE access_token = ?",
    "by_refresh": "SELECT body, ttl FROM oauth2_tokens WHERE refresh_token = ?",
    "add_token": f"INSERT INTO oauth2_tokens ({TOKEN_COLUMNS}) VALUES ({', '.join('?' * 10)})",
    "take_token": "DELETE FROM oauth2_tokens WHERE access_token = ? RETURNING id",
    "add_code": f"INSERT INTO oauth2_authorization_codes ({CODE_COLUMNS}) VALUES ({', '.join('?' * 8)})",
    "code": "SELECT body, ttl FROM oauth2_authorization_codes WHERE code = ?",
    "take_code": "DELETE FROM oauth2_authorization_codes WHERE code = ? RETURNING body, ttl",
}
SWEEPS = ("DELETE FROM oauth2_tokens WHERE ttl IS NOT NULL AND ttl <= ?",
          "DELETE FROM oauth2_authorization_codes WHERE ttl <= ?")
# Outside a node only: the two tables as the store's migrations make them (without references).
MEMORY_SCHEMA = """
CREATE TABLE oauth2_tokens (id TEXT PRIMARY KEY, created_at INTEGER, updated_at INTEGER, access_token TEXT UNIQUE,
    refresh_token TEXT UNIQUE, service_id TEXT, credential_id TEXT, cache_key TEXT UNIQUE, body TEXT NOT NULL, ttl INTEGER);
CREATE TABLE oauth2_authorization_codes (id TEXT PRIMARY KEY, code TEXT UNIQUE NOT NULL, credential_id TEXT,
    service_id TEXT, plugin_id TEXT, created_at INTEGER, ttl INTEGER, body TEXT NOT NULL);
"""


class NoDatabase(RuntimeError):
    """This node has no database to write issued tokens to (DB-less, hybrid data plane)."""


class _Sqlite:
    """The store's SQLite file (or one in memory): a reading connection used on the event loop, a
    writing one used from threads."""

    def __init__(self, path: str) -> None:
        if path == ":memory:":
            uri = f"file:oauth2-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self.reader, self.writer = (sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                                        for _ in range(2))
            self.writer.executescript(MEMORY_SCHEMA)
        else:
            self.reader, self.writer = (sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
                                        for _ in range(2))
            self.writer.execute("PRAGMA foreign_keys = ON")  # a token's credential deleted meanwhile: no row
        self.lock = threading.Lock()

    async def read(self, name: str, params: tuple) -> list[tuple]:
        return self.reader.execute(SQL[name], params).fetchall()

    async def write(self, sql: str, params: tuple) -> list[tuple]:
        return await asyncio.to_thread(self._write, sql, params)

    def _write(self, sql: str, params: tuple) -> list[tuple]:
        with self.lock:
            return self.writer.execute(sql, params).fetchall()


class _Postgres(NodePg):
    """The node's PostgreSQL, on the worker's own connection (as cluster counters)."""

    PG_SQL = {name: sql.replace("?", "%s") for name, sql in SQL.items()}

    # In a Task: the engine steps phases outside any, and psycopg's timeout (asyncio.timeout)
    # refuses to run without one (as rate-limiting's `in_task`).
    async def read(self, name: str, params: tuple) -> list[tuple]:
        return await asyncio.ensure_future(self.run(self.PG_SQL[name], params))

    async def write(self, sql: str, params: tuple) -> list[tuple]:
        return await asyncio.ensure_future(self.run(sql.replace("?", "%s"), params))


class IssuedTokens:
    """Issued tokens and codes in the node's database (see the module's rules)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.cache: dict[str, tuple[float, dict | None]] = {}
        self.swept = 0.0
        on_database_change(self.clear_cache)

    def clear_cache(self) -> None:
        self.cache = {}

    async def token(self, access_token: str) -> dict[str, Any] | None:
        hit = self.cache.get(access_token)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        token = _live(await self.db.read("token", (access_token,)))
        if len(self.cache) >= CACHE_MAX:
            self.cache = {}
        self.cache[access_token] = (now + CACHE_TTL, token)
        return token

    async def by_refresh_token(self, refresh_token: str) -> dict[str, Any] | None:
        return _live(await self.db.read("by_refresh", (refresh_token,)))

    async def add_token(self, token: dict[str, Any], ttl: int | None) -> None:
        from meshway.model import ENTITIES

        row = ENTITIES["oauth2_tokens"].validate(token)
        values = (row["id"], row["created_at"], row.get("updated_at"), row["access_token"], row.get("refresh_token"),
                  _id(row.get("service")), row["credential"]["id"], "oauth2_tokens:" + row["access_token"],
                  json.dumps(row, sort_keys=True), ttl)
        await self._write(SQL["add_token"], values)
        self.cache.pop(row["access_token"], None)

    async def take_token(self, access_token: str) -> bool:
        """Delete an issued token; True for the caller whose delete removed it."""
        self.cache.pop(access_token, None)
        return bool(await self._write(SQL["take_token"], (access_token,)))

    async def add_code(self, code: dict[str, Any], ttl: int) -> None:
        values = (str(uuid.uuid4()), code["code"], code["credential"]["id"], _id(code.get("service")),
                  _id(code.get("plugin")), code["created_at"], code["created_at"] + ttl, json.dumps(code))
        await self._write(SQL["add_code"], values)

    async def peek_code(self, code: str) -> dict[str, Any] | None:
        """The code without using it (what Kong's checks look at before deleting it)."""
        return _live(await self.db.read("code", (code,)))

    async def take_code(self, code: str) -> dict[str, Any] | None:
        """The code, deleted so that it is used once; None when unknown, expired or taken."""
        return _live(await self._write(SQL["take_code"], (code,)))

    async def _write(self, sql: str, params: tuple) -> list[tuple]:
        rows = await self.db.write(sql, params)
        now = time.monotonic()
        if now - self.swept >= SWEEP_EVERY:
            self.swept = now
            for sweep in SWEEPS:
                await self.db.write(sweep, (int(time.time()),))
        return rows


class _NoDatabase:
    """DB-less and data planes: nothing issued is found, nothing can be written."""

    def clear_cache(self) -> None:
        pass

    async def token(self, access_token: str) -> None:
        return None

    async def by_refresh_token(self, refresh_token: str) -> None:
        return None

    async def peek_code(self, code: str) -> None:
        return None

    def __getattr__(self, name: str) -> Any:  # add_token, take_token, add_code, take_code
        async def refuse(*_: Any) -> Any:
            raise NoDatabase("this node has no database: the oauth2 plugin cannot issue or refresh tokens here "
                             "(as in Kong, DB-less nodes and data planes accept the tokens of their configuration only)")
        return refuse


def _id(ref: Any) -> str | None:
    return ref.get("id") if isinstance(ref, dict) else None


def _live(rows: list[tuple]) -> dict[str, Any] | None:
    """The row's entity, unless there is none or its ttl has passed."""
    if not rows:
        return None
    body, ttl = rows[0]
    if ttl is not None and ttl <= time.time():
        return None
    return json.loads(body)


_issued: Any = None
_lock = threading.Lock()


def issued_tokens() -> Any:
    """This worker's view of the issued tokens, by the node's database (see the module's rules)."""
    global _issued
    if _issued is None:
        with _lock:
            if _issued is None:
                _issued = _open(_cluster_counters._node)
    return _issued


def _open(node: dict[str, Any] | None) -> Any:
    if node is None:
        return IssuedTokens(_Sqlite(":memory:"))
    if node["database"] == "off" or node["role"] == "data_plane":
        return _NoDatabase()
    if node["database"] == "postgres":
        return IssuedTokens(_Postgres())
    return IssuedTokens(_Sqlite(node["sqlite_path"]))


def reset_for_test() -> None:
    """Forget this process's store (a unit test that changes the node's database)."""
    global _issued
    _issued = None
