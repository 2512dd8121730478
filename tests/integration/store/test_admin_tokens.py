"""Admin API tokens in the store (SQLite and PostgreSQL): hashed, revocable, added by a migration."""
from __future__ import annotations

import pytest
from sqlalchemy import delete, text

from meshway.store import StoreError


def test_tokens_are_stored_hashed_and_revocable(store):
    tokens = store.admin_tokens
    token = tokens.create("deploy-bot")
    assert token.startswith("mwat_") and len(token) > 40
    assert tokens.verify(token) == "deploy-bot"
    assert tokens.verify(token + "x") is None and tokens.verify("") is None
    with store.engine.connect() as conn:
        stored = conn.execute(text("select token_hash from admin_tokens")).scalar()
    assert token not in stored and len(stored) == 64
    assert [t["name"] for t in tokens.list()] == ["deploy-bot"]
    version = store.version()
    assert tokens.revoke("deploy-bot") and not tokens.revoke("deploy-bot")
    assert tokens.verify(token) is None
    assert store.version() == version  # tokens are not configuration: nothing to push
    assert store.export_snapshot().get("admin_tokens") is None


def test_names_are_checked_and_unique(store):
    store.admin_tokens.create("ops")
    with pytest.raises(StoreError, match="already exists"):
        store.admin_tokens.create("ops")
    with pytest.raises(StoreError, match="invalid token name"):
        store.admin_tokens.create("with space")


def test_older_database_gets_the_table_by_migrations_up(store):
    with store.engine.begin() as conn:  # as a database bootstrapped before `002_admin_tokens` was
        conn.execute(text("drop table admin_tokens"))
        conn.execute(delete(store.tables["schema_migrations"]).where(
            store.tables["schema_migrations"].c.name == "002_admin_tokens"))
    assert store.migrations_status()["pending"] == ["002_admin_tokens"]
    with pytest.raises(StoreError, match="migrations up"):
        store.admin_tokens.create("early")
    assert store.up() == ["002_admin_tokens"]
    assert store.admin_tokens.verify(store.admin_tokens.create("late")) == "late"
