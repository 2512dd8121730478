"""Config entries in the store (SQLite and PostgreSQL): indexes, the snapshot, the migration."""
from __future__ import annotations

from sqlalchemy import delete, text

from meshway.model import snapshot_hash
from meshway.zones import check_entry

RESOLVER = check_entry({"kind": "service-resolver", "name": "api", "redirect": {"service": "api", "datacenter": "cloud"}})
DEFAULTS = check_entry({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"mode": "local"}})


def test_put_get_list_delete_with_consuls_indexes(store):
    first = store.config_entries.put(RESOLVER)
    assert first["entry"] == RESOLVER and first["create_index"] == first["modify_index"] > 0
    same = store.config_entries.put(RESOLVER)  # unchanged: the modify index stays
    assert same["modify_index"] == first["modify_index"]
    changed = store.config_entries.put({**RESOLVER, "ConnectTimeout": 5_000_000_000})
    assert changed["create_index"] == first["create_index"] and changed["modify_index"] > first["modify_index"]
    assert [r["entry"]["Name"] for r in store.config_entries.list("service-resolver")] == ["api"]
    assert store.config_entries.get("service-resolver", "web") is None
    assert store.config_entries.delete("service-resolver", "api") is True
    assert store.config_entries.delete("service-resolver", "api") is False
    assert store.config_entries.list("service-resolver") == []


def test_entries_are_in_the_snapshot_and_move_its_hash(store):
    before = store.export_snapshot()
    assert before["config_entries"] == []
    store.config_entries.put(RESOLVER)
    store.config_entries.put(DEFAULTS)
    after = store.export_snapshot()
    assert [e["Kind"] for e in after["config_entries"]] == ["proxy-defaults", "service-resolver"]
    assert after["config_entries"][1] == RESOLVER
    assert snapshot_hash(after) != snapshot_hash(before)
    version = store.version()
    store.config_entries.put(RESOLVER)  # an identical write still counts as a write, as any other
    assert store.version() == version + 1


def test_an_older_database_gets_the_table_by_migrations_up(store):
    with store.engine.begin() as conn:
        conn.execute(text("drop table config_entries"))
        conn.execute(delete(store.tables["schema_migrations"]).where(
            store.tables["schema_migrations"].c.name == "005_config_entries"))
    assert store.migrations_status()["pending"] == ["005_config_entries"]
    assert store.up() == ["005_config_entries"]
    store.config_entries.put(DEFAULTS)
    assert store.config_entries.get("proxy-defaults", "global")["entry"] == DEFAULTS
