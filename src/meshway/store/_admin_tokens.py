"""Admin API tokens (`admin_auth = token`): only their SHA-256 is stored, never the token.

A token is 256 random bits (`secrets.token_urlsafe(32)`) behind a `mwat_` prefix that lets
secret scanners recognise it. Such a token cannot be guessed, so a plain SHA-256 is enough
(as for GitHub tokens); a slow password hash would add a delay to every Admin API request and
protect nothing more. Tokens are not configuration: writing them does not bump the `version`
row, so data planes and workers never see them.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy import BigInteger, Column, Connection, Engine, MetaData, String, Table, delete, insert, inspect, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from meshway.store._errors import StoreError

ADMIN_TOKENS_TABLE = "admin_tokens"
TOKEN_PREFIX = "mwat_"
NAME = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")


def admin_tokens_table(metadata: MetaData) -> Table:
    return Table(ADMIN_TOKENS_TABLE, metadata, Column("name", String(128), primary_key=True),
                 Column("token_hash", String(64), nullable=False, unique=True),
                 Column("created_at", BigInteger, nullable=False))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class AdminTokens:
    """Create, list, revoke and verify Admin API tokens in the node's database."""

    def __init__(self, engine: Engine, table: Table) -> None:
        self.engine, self.table = engine, table

    def create(self, name: str) -> str:
        """A new token named `name`; the only time its value is known."""
        if not NAME.match(name):
            raise StoreError(f"invalid token name {name!r} (letters, digits and . _ ~ -, at most 128)")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = {"name": name, "token_hash": hash_token(token), "created_at": int(time.time())}
        try:
            with self.engine.begin() as conn:
                self._require_table(conn)
                conn.execute(insert(self.table).values(row))
        except IntegrityError:
            raise StoreError(f"a token named {name!r} already exists (revoke it first)") from None
        return token

    def list(self) -> list[dict[str, Any]]:
        query = select(self.table.c.name, self.table.c.created_at).order_by(self.table.c.name)
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def revoke(self, name: str) -> bool:
        with self.engine.begin() as conn:
            self._require_table(conn)
            return conn.execute(delete(self.table).where(self.table.c.name == name)).rowcount > 0

    def verify(self, token: str) -> str | None:
        """The name of the token, or None. Every stored hash is compared in constant time."""
        presented = hash_token(token)
        with self._read() as conn:
            rows = conn.execute(select(self.table.c.name, self.table.c.token_hash)).all()
        found = None
        for name, stored in rows:  # no early exit: the time taken does not depend on which one matched
            if hmac.compare_digest(presented, stored):
                found = name
        return found

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except DBAPIError as e:
            missing = "admin_tokens" in str(e.orig) and ("exist" in str(e.orig) or "no such table" in str(e.orig))
            hint = "; run 'meshway migrations up'" if missing else ""
            raise StoreError(f"database error: {str(e.orig).splitlines()[0]}{hint}") from None

    def _require_table(self, conn: Connection) -> None:
        if not inspect(conn).has_table(ADMIN_TOKENS_TABLE):
            raise StoreError("the database has no admin_tokens table; run 'meshway migrations up'")
