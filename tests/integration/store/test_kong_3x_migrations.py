"""The store for Kong 3.x's shapes: the `vaults` table (`003_vaults` on older databases, references
checked on write) and rate-limiting's `redis` record (`004_rate_limiting_redis_record`)."""
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


def test_stored_flat_redis_fields_move_into_the_record(store):
    """A database written before Kong 3.6's `redis` record: `004_rate_limiting_redis_record`."""
    import json

    from sqlalchemy import update

    plugin = store.insert("plugins", {"name": "rate-limiting", "config": {"minute": 5}})
    old = {**plugin, "config": {"minute": 5.0, "policy": "redis", "redis_host": "r.test", "redis_port": 6380,
                                "redis_timeout": 2000.0, "redis_password": None, "sync_rate": -1.0}}
    with store.engine.begin() as conn:
        table = store.tables["plugins"]
        conn.execute(update(table).where(table.c.id == plugin["id"]).values(body=json.dumps(old)))
        conn.execute(delete(store.tables["schema_migrations"]).where(
            store.tables["schema_migrations"].c.name == "004_rate_limiting_redis_record"))
    assert store.up() == ["004_rate_limiting_redis_record"]
    config = store.get("plugins", plugin["id"])["config"]
    assert config["redis"]["host"] == "r.test" and config["redis"]["port"] == 6380 and config["minute"] == 5
    assert not any(k.startswith("redis_") for k in config)
    patched = store.update("plugins", plugin["id"], {"config": {"redis": {"host": "s.test"}}})
    assert patched["config"]["redis"] == {**config["redis"], "host": "s.test"}
