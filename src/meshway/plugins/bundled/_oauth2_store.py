"""The tokens and authorization codes the oauth2 plugin issues, shared by a node's workers.

Rules:
- Kong writes them to its database (and so cannot run oauth2 without one). Here they live in
  one SQLite file in the node's shared directory (`<prefix>/shm/oauth2.sqlite`, WAL mode), so a
  token issued by one worker is good on every worker of the node at once, in every mode
  (traditional, DB-less, a hybrid data plane). The directory is emptied when the node starts:
  issued tokens last as long as the node, like Kong's DB-less caches. Tokens written through the
  Admin API or a declarative file (`oauth2_tokens`) come with the config instead.
- Reads are single-row primary-key lookups that never wait on a writer (WAL); writes are a row
  each, without fsync (`synchronous=OFF`: the file does not outlive the node anyway).
- A code is used once: `take_code` deletes it and only the worker whose delete removed the row
  gets it. A refreshed token is deleted the same way, so a refresh token works once.
- Rows past their `purge_at` (Kong's ttl: the refresh token's lifetime, 300 s for a code) are
  removed now and then on write.
- Outside a node (unit tests) the database is in this process's memory.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from meshway.plugins import shared_directory

log = logging.getLogger("meshway.plugins")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (access_token TEXT PRIMARY KEY, id TEXT NOT NULL, credential TEXT NOT NULL,
    service TEXT, authenticated_userid TEXT, scope TEXT, expires_in INTEGER NOT NULL, created_at INTEGER NOT NULL,
    refresh_token TEXT UNIQUE, purge_at INTEGER);
CREATE TABLE IF NOT EXISTS codes (code TEXT PRIMARY KEY, credential TEXT NOT NULL, service TEXT, plugin TEXT,
    authenticated_userid TEXT, scope TEXT, challenge TEXT, challenge_method TEXT, created_at INTEGER NOT NULL,
    purge_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revoked (access_token TEXT PRIMARY KEY, purge_at INTEGER);
"""
TOKEN_COLUMNS = ("access_token", "id", "credential", "service", "authenticated_userid", "scope", "expires_in",
                 "created_at", "refresh_token", "purge_at")
CODE_COLUMNS = ("code", "credential", "service", "plugin", "authenticated_userid", "scope", "challenge",
                "challenge_method", "created_at", "purge_at")
PURGE_EVERY = 100  # writes


class TokenStore:
    """Issued tokens and codes of this node (see the module's rules)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()
        self.writes = 0

    def token(self, access_token: str) -> dict[str, Any] | None:
        row = self.db.execute(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens WHERE access_token = ?",
                              (access_token,)).fetchone()
        return _token(row) if row else None

    def by_refresh_token(self, refresh_token: str) -> dict[str, Any] | None:
        row = self.db.execute(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens WHERE refresh_token = ?",
                              (refresh_token,)).fetchone()
        if row is None or (row[9] is not None and row[9] <= time.time()):
            return None
        return _token(row)

    def add_token(self, token: dict[str, Any], purge_at: int | None) -> None:
        values = (token["access_token"], token["id"], token["credential"]["id"], _id(token.get("service")),
                  token.get("authenticated_userid"), token.get("scope"), token["expires_in"], token["created_at"],
                  token.get("refresh_token"), purge_at)
        self.write(f"INSERT INTO tokens ({', '.join(TOKEN_COLUMNS)}) VALUES ({', '.join('?' * len(values))})", values)

    def take_token(self, access_token: str) -> bool:
        """Delete an issued token; True for the caller whose delete removed it."""
        return self.write("DELETE FROM tokens WHERE access_token = ?", (access_token,)) == 1

    def revoke(self, access_token: str, purge_at: int | None) -> bool:
        """Mark a token of the config as used up (refreshed); True the first time."""
        return self.write("INSERT OR IGNORE INTO revoked (access_token, purge_at) VALUES (?, ?)",
                          (access_token, purge_at)) == 1

    def revoked(self, access_token: str) -> bool:
        return self.db.execute("SELECT 1 FROM revoked WHERE access_token = ?", (access_token,)).fetchone() is not None

    def add_code(self, code: dict[str, Any], ttl: int) -> None:
        values = (code["code"], code["credential"]["id"], _id(code.get("service")), _id(code.get("plugin")),
                  code.get("authenticated_userid"), code.get("scope"), code.get("challenge"),
                  code.get("challenge_method"), code["created_at"], code["created_at"] + ttl)
        self.write(f"INSERT INTO codes ({', '.join(CODE_COLUMNS)}) VALUES ({', '.join('?' * len(values))})", values)

    def take_code(self, code: str) -> dict[str, Any] | None:
        """The code, deleted so that it is used once; None when unknown, expired or taken."""
        row = self.db.execute(f"SELECT {', '.join(CODE_COLUMNS)} FROM codes WHERE code = ?", (code,)).fetchone()
        if row is None or self.write("DELETE FROM codes WHERE code = ?", (code,)) != 1 or row[9] <= time.time():
            return None
        found = dict(zip(CODE_COLUMNS, row))
        for name in ("credential", "service", "plugin"):
            found[name] = {"id": found[name]} if found[name] else None
        return found

    def peek_code(self, code: str) -> dict[str, Any] | None:
        """The code without using it (what Kong's checks look at before deleting it)."""
        row = self.db.execute(f"SELECT {', '.join(CODE_COLUMNS)} FROM codes WHERE code = ?", (code,)).fetchone()
        if row is None or row[9] <= time.time():
            return None
        found = dict(zip(CODE_COLUMNS, row))
        for name in ("credential", "service", "plugin"):
            found[name] = {"id": found[name]} if found[name] else None
        return found

    def write(self, sql: str, values: tuple) -> int:
        with self.lock:
            count = self.db.execute(sql, values).rowcount
            self.writes += 1
            if self.writes % PURGE_EVERY == 0:
                self.purge(int(time.time()))
            return count

    def purge(self, now: int) -> None:
        for table in ("tokens", "codes", "revoked"):
            self.db.execute(f"DELETE FROM {table} WHERE purge_at IS NOT NULL AND purge_at <= ?", (now,))


def _id(ref: Any) -> str | None:
    return ref.get("id") if isinstance(ref, dict) else None


def _token(row: tuple) -> dict[str, Any]:
    token = dict(zip(TOKEN_COLUMNS, row))
    token["credential"] = {"id": token["credential"]}
    token["service"] = {"id": token["service"]} if token["service"] else None
    token["token_type"] = "bearer"
    return token


_stores: dict[str, TokenStore] = {}
_lock = threading.Lock()


def token_store() -> TokenStore:
    """This node's store (one connection per process)."""
    directory = shared_directory()
    path = str(directory / "oauth2.sqlite") if directory is not None else ":memory:"
    store = _stores.get(path)
    if store is None:
        with _lock:
            store = _stores.get(path)
            if store is None:
                store = _stores[path] = TokenStore(path)
    return store
