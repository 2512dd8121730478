"""The store's `vaults` table: created by `003_vaults` on older databases; references checked on write."""
from __future__ import annotations

import pytest
from sqlalchemy import delete, text

from meshway.model import SchemaViolation


def test_older_database_gets_the_vaults_table_by_migrations_up(store):
    with store.engine.begin() as conn:  # as a database bootstrapped before `003_vaults` was
        conn.execute(text("drop table vaults"))
        conn.execute(delete(store.tables["schema_migrations"]).where(
            store.tables["schema_migrations"].c.name == "003_vaults"))
    assert store.migrations_status()["pending"] == ["003_vaults"]
    assert store.up() == ["003_vaults"]
    vault = store.insert("vaults", {"prefix": "app-env", "name": "env", "config": {"prefix": "APP_"}})
    assert store.get("vaults", "app-env") == vault


def test_references_resolve_with_the_stored_vaults(store, monkeypatch):
    monkeypatch.setenv("APP_SECRET_KEY", "k1")
    consumer = store.insert("consumers", {"username": "u"})
    ref = {"key": "{vault://app-env/secret-key}", "consumer": {"id": consumer["id"]}}
    with pytest.raises(SchemaViolation) as e:  # no vault of that prefix yet
        store.insert("keyauth_credentials", ref)
    assert e.value.fields == {"key": "vault not found (app-env) [{vault://app-env/secret-key}]"}
    store.insert("vaults", {"prefix": "app-env", "name": "env", "config": {"prefix": "APP_"}})
    assert store.insert("keyauth_credentials", ref)["key"] == "{vault://app-env/secret-key}"
    assert store.export_snapshot()["vaults"][0]["prefix"] == "app-env"
