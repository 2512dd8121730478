"""The oauth2 plugin's issued tokens and codes live in the node's store (SQLite here; PostgreSQL in
tests/e2e/test_oauth2_database.py): the Admin API's store sees what a worker wrote, a code and a
refreshed token are taken by exactly one taker, ttl and deletes apply, and a node without a
database refuses to issue."""
from __future__ import annotations

import asyncio
import time
import types
import uuid

import pytest

from meshway.plugins import database_changed
from meshway.plugins.bundled import _oauth2_store
from meshway.plugins.bundled._oauth2_store import IssuedTokens, NoDatabase, _Sqlite
from meshway.store import open_store


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def store_and_tokens(tmp_path):
    settings = types.SimpleNamespace(database="sqlite", sqlite_path=str(tmp_path / "meshway.db"), datacenter="dc1")
    store = open_store(settings, bootstrap=True)
    consumer = store.insert("consumers", {"username": "bob"})
    service = store.insert("services", {"name": "api", "host": "127.0.0.1"})
    cred = store.insert("oauth2_credentials", {"name": "app", "consumer": {"id": consumer["id"]}})
    yield store, IssuedTokens(_Sqlite(settings.sqlite_path)), cred, service
    store.close()


def token(cred: dict, service: dict | None, access: str, refresh: str | None = None) -> dict:
    return {"id": str(uuid.uuid4()), "access_token": access, "credential": {"id": cred["id"]},
            "service": {"id": service["id"]} if service else None, "authenticated_userid": "u", "scope": "read",
            "expires_in": 60, "created_at": int(time.time()), "refresh_token": refresh}


def test_a_token_a_worker_writes_is_an_oauth2_tokens_entity(store_and_tokens):
    store, issued, cred, service = store_and_tokens
    run(issued.add_token(token(cred, service, "abc", "r1"), int(time.time()) + 600))
    listed, _ = store.list("oauth2_tokens")
    assert [(t["access_token"], t["refresh_token"], t["service"], t["token_type"]) for t in listed] == [
        ("abc", "r1", {"id": service["id"]}, "bearer")]
    assert store.get("oauth2_tokens", "abc")["credential"] == {"id": cred["id"]}
    assert run(issued.token("abc"))["scope"] == "read"
    store.delete("oauth2_tokens", "abc")
    assert run(issued.token("abc"))["scope"] == "read"  # cached until the database change is told
    database_changed()  # what the master sends its workers after the store's version moved
    assert run(issued.token("abc")) is None
    assert run(issued.by_refresh_token("r1")) is None


def test_codes_and_tokens_are_taken_once(store_and_tokens):
    store, issued, cred, service = store_and_tokens
    other = IssuedTokens(_Sqlite(str(store.engine.url.database)))
    run(issued.add_code({"code": "c1", "credential": {"id": cred["id"]}, "service": {"id": service["id"]},
                         "created_at": int(time.time())}, 300))
    assert run(other.peek_code("c1"))["credential"] == {"id": cred["id"]}
    assert run(other.take_code("c1")) is not None and run(issued.take_code("c1")) is None
    run(issued.add_token(token(cred, None, "t1", "r1"), None))
    assert run(other.by_refresh_token("r1"))["access_token"] == "t1"
    assert run(other.take_token("t1")) and not run(issued.take_token("t1"))


def test_ttl_past_rows_are_not_used_and_deleting_the_credential_deletes_them(store_and_tokens):
    store, issued, cred, service = store_and_tokens
    run(issued.add_code({"code": "old", "credential": {"id": cred["id"]}, "created_at": int(time.time()) - 400}, 300))
    assert run(issued.peek_code("old")) is None and run(issued.take_code("old")) is None
    run(issued.add_token(token(cred, service, "t2", "r2"), int(time.time()) - 1))
    assert run(issued.by_refresh_token("r2")) is None and run(issued.token("t2")) is None
    run(issued.add_token(token(cred, service, "t3"), None))
    run(issued.add_code({"code": "c3", "credential": {"id": cred["id"]}, "created_at": int(time.time())}, 300))
    store.delete("oauth2_credentials", cred["id"])  # Kong's on_delete = cascade
    database_changed()
    assert run(issued.token("t3")) is None and run(issued.peek_code("c3")) is None


def test_a_credential_deleted_meanwhile_fails_the_write(store_and_tokens):
    store, issued, cred, service = store_and_tokens
    with pytest.raises(Exception, match="FOREIGN KEY"):
        run(issued.add_token(token({"id": str(uuid.uuid4())}, service, "t4"), None))
    assert store.list("oauth2_tokens")[0] == []


def test_a_node_without_a_database_finds_nothing_and_refuses_to_write():
    for node in ({"database": "off", "role": "traditional"}, {"database": "off", "role": "data_plane"}):
        issued = _oauth2_store._open(node)
        assert run(issued.token("x")) is None and run(issued.peek_code("x")) is None
        with pytest.raises(NoDatabase, match="no database"):
            run(issued.add_token({}, None))
        with pytest.raises(NoDatabase):
            run(issued.take_code("x"))
