"""The Store on SQLite and PostgreSQL: migrations, CRUD, Kong's errors, cascades, versions, snapshots."""
from __future__ import annotations

import threading

import pytest

from meshway.model import ForeignKeyViolation, NotFound, SchemaViolation, UniqueViolation, snapshot_hash
from meshway.store import StoreError, db_export, db_import


def _service(store, name="svc", **kw):
    return store.insert("services", {"name": name, "host": f"{name}.test", **kw})


def test_migrations_lifecycle(store):
    assert store.migrations_status() == {"bootstrapped": True, "executed": ["000_base", "001_mesh_resources", "002_admin_tokens", "003_vaults", "004_rate_limiting_redis_record", "005_config_entries", "006_hmacauth_credentials", "007_oauth2", "008_consumer_groups", "009_oauth2_issued_in_database"], "pending": []}
    assert store.up() == []
    store.reset()
    assert store.migrations_status() == {"bootstrapped": False, "executed": [], "pending": ["000_base", "001_mesh_resources", "002_admin_tokens", "003_vaults", "004_rate_limiting_redis_record", "005_config_entries", "006_hmacauth_credentials", "007_oauth2", "008_consumer_groups", "009_oauth2_issued_in_database"]}
    with pytest.raises(StoreError, match="needs bootstrapping"):
        store.up()
    store.bootstrap()
    assert store.migrations_status()["bootstrapped"] is True


def test_a_database_made_before_008_gets_oauth2_ttl_and_codes(store):
    from sqlalchemy import inspect, text

    with store.engine.begin() as conn:  # the schema as 007 left it
        conn.execute(text("DELETE FROM schema_migrations WHERE name = '009_oauth2_issued_in_database'"))
        conn.execute(text("DROP TABLE oauth2_authorization_codes"))
        conn.execute(text("DROP INDEX ix_oauth2_tokens_ttl"))
        conn.execute(text("ALTER TABLE oauth2_tokens DROP COLUMN ttl"))
    assert store.migrations_status()["pending"] == ["009_oauth2_issued_in_database"]
    assert store.up() == ["009_oauth2_issued_in_database"]
    with store.engine.connect() as conn:
        assert "ttl" in {c["name"] for c in inspect(conn).get_columns("oauth2_tokens")}
        assert inspect(conn).has_table("oauth2_authorization_codes")


def test_get_by_id_and_by_name(store):
    svc = _service(store)
    assert store.get("services", svc["id"]) == svc
    assert store.get("services", "svc") == svc
    assert store.get("services", svc["id"].upper()) == svc
    with pytest.raises(NotFound):
        store.get("services", "other")


def test_patch_merges_and_put_replaces(store):
    svc = _service(store, retries=1)
    patched = store.update("services", "svc", {"port": 8080})
    assert (patched["port"], patched["retries"], patched["id"]) == (8080, 1, svc["id"])
    replaced = store.upsert("services", "svc", {"host": "new.test"})
    assert (replaced["port"], replaced["retries"], replaced["name"], replaced["id"]) == (80, 5, "svc", svc["id"])
    created = store.upsert("services", "fresh", {"host": "fresh.test"})
    assert store.get("services", "fresh")["id"] == created["id"]


def test_unique_violation_names_the_value(store):
    _service(store)
    with pytest.raises(UniqueViolation) as e:
        _service(store)
    assert e.value.message == "UNIQUE violation detected on '{name=\"svc\"}'"
    assert e.value.body()["code"] == 5 and e.value.status == 409


def test_bad_reference_is_a_foreign_key_violation(store):
    missing = "0f9c9a1e-6b8a-4c55-8f4e-0a1b2c3d4e5f"
    with pytest.raises(ForeignKeyViolation) as e:
        store.insert("routes", {"paths": ["/"], "service": {"id": missing}})
    assert e.value.message == f"the foreign key '{{id=\"{missing}\"}}' does not reference an existing 'services' entity."
    with pytest.raises(ForeignKeyViolation):
        store.insert("routes", {"paths": ["/"], "service": {"name": "nope"}})


def test_reference_by_name_is_resolved(store):
    svc = _service(store)
    route = store.insert("routes", {"paths": ["/"], "service": {"name": "svc"}})
    assert route["service"] == {"id": svc["id"]}


def test_delete_of_a_referenced_service_is_refused(store):
    svc = _service(store)
    store.insert("routes", {"paths": ["/"]}, parent=("service", svc["id"]))
    with pytest.raises(ForeignKeyViolation) as e:
        store.delete("services", "svc")
    assert e.value.message == "an existing 'routes' entity references this 'services' entity"
    assert store.get("services", "svc")


def test_cascades_where_kong_cascades(store, plugin_for_test):
    up = store.insert("upstreams", {"name": "backend"})
    store.insert("targets", {"target": "10.0.0.1:80"}, parent=("upstream", up["id"]))
    consumer = store.insert("consumers", {"username": "alice"})
    for collection, data in (("keyauth_credentials", {}), ("acls", {"group": "g"}),
                             ("basicauth_credentials", {"username": "alice", "password": "pw"}),
                             ("plugins", {"name": "limits-for-test"})):
        store.insert(collection, data, parent=("consumer", consumer["id"]))
    svc = _service(store)
    route = store.insert("routes", {"paths": ["/"], "service": {"id": svc["id"]}})
    store.insert("plugins", {"name": "limits-for-test", "route": {"id": route["id"]}})
    assert store.delete("upstreams", "backend") and store.delete("consumers", "alice")
    assert store.delete("routes", route["id"])
    snap = store.export_snapshot()
    for name in ("targets", "keyauth_credentials", "acls", "basicauth_credentials", "plugins"):
        assert snap[name] == [], name
    assert store.delete("routes", route["id"]) is False


def test_snis_go_with_their_certificate(store):
    from tests.fixtures.certs import cert_pair_for_test

    cert, key = cert_pair_for_test()
    c = store.insert("certificates", {"cert": cert, "key": key})
    store.insert("snis", {"name": "a.test", "certificate": {"id": c["id"]}})
    store.delete("certificates", c["id"])
    assert store.export_snapshot()["snis"] == []


def test_version_changes_on_writes_only(store):
    v0 = store.version()
    _service(store)
    v1 = store.version()
    store.list("services")
    assert v1 > v0 and store.version() == v1
    with pytest.raises(SchemaViolation):
        store.insert("services", {"host": 5})
    assert store.version() == v1  # a refused write leaves no trace


def test_pagination_and_tags(store):
    for i in range(5):
        _service(store, f"s{i}", tags=["even" if i % 2 == 0 else "odd", "all"])
    page, offset = store.list("services", size=2)
    seen = [s["name"] for s in page]
    while offset:
        page, offset = store.list("services", size=2, offset=offset)
        seen += [s["name"] for s in page]
    assert sorted(seen) == ["s0", "s1", "s2", "s3", "s4"]
    assert len(store.list("services", tags="even,all")[0]) == 3
    assert len(store.list("services", tags="even/odd")[0]) == 5
    assert store.list("services", tags="even,odd")[0] == []


def test_concurrent_writers_from_threads(store):
    v0 = store.version()
    errors: list[Exception] = []

    def write(i: int) -> None:
        try:
            _service(store, f"t{i}")
        except Exception as e:  # reported below with the test's failure
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(store.export_snapshot()["services"]) == 12
    assert store.version() == v0 + 12


def test_import_is_atomic(store):
    _service(store, "keep")
    before = store.export_snapshot()
    bad = store.export_snapshot()
    bad["services"] = []
    bad["routes"] = [{"id": "0f9c9a1e-6b8a-4c55-8f4e-0a1b2c3d4e5f", "service": {"id": "11111111-2222-3333-4444-555555555555"},
                      "paths": ["/"], "created_at": 1, "updated_at": 1}]  # its service does not exist
    with pytest.raises(ForeignKeyViolation):  # the database's foreign key refuses it
        store.import_snapshot(bad)
    assert snapshot_hash(store.export_snapshot()) == snapshot_hash(before)


def test_db_export_import_round_trip(store, tmp_path, plugin_for_test):
    svc = _service(store)
    store.insert("routes", {"paths": ["/"], "service": {"id": svc["id"]}})
    consumer = store.insert("consumers", {"username": "bob"})
    store.insert("basicauth_credentials", {"username": "bob", "password": "pw"}, parent=("consumer", consumer["id"]))
    store.insert("plugins", {"name": "limits-for-test", "config": {"minute": 3}, "service": {"id": svc["id"]}})
    store.insert("upstreams", {"name": "backend", "healthchecks": {"active": {"healthy": {"interval": 5}}}})
    before = store.export_snapshot()
    path = tmp_path / "kong.yml"
    db_export(store, path)
    store.reset()
    store.bootstrap()
    db_import(store, path)
    after = store.export_snapshot()
    assert snapshot_hash(after) == snapshot_hash(before)
    assert after["basicauth_credentials"][0]["password"] == before["basicauth_credentials"][0]["password"]


def test_version_of_an_empty_database_is_a_store_error(store):
    store.reset()
    with pytest.raises(StoreError, match="cannot read the store version"):
        store.version()
    with pytest.raises(StoreError, match="database error"):
        _service(store)
