"""Migration 008_consumer_groups on a database made before consumer groups existed (SQLite and
PostgreSQL): the tables appear, stored plugins gain `consumer_group` and a cache key that still
refuses a duplicate, and a plugin can then be scoped to a group."""
from __future__ import annotations

import dataclasses

import pytest

from meshway.model import UniqueViolation
from meshway.model.entities import ENTITIES
from meshway.store import _migrations, open_store
from tests.integration.store.conftest import store_settings

OLD_CACHE_KEY = ("name", "route", "service", "consumer")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_settings(request, tmp_path, monkeypatch, plugin_for_test):
    settings = store_settings(request.param, tmp_path, request)
    with monkeypatch.context() as old:  # the declarations and migrations as they were before 008
        plugins = ENTITIES["plugins"]
        fields = {k: v for k, v in plugins.fields.items() if k != "consumer_group"}
        old.setitem(ENTITIES, "plugins", dataclasses.replace(plugins, fields=fields, cache_key=OLD_CACHE_KEY))
        old.delitem(ENTITIES, "consumer_groups")
        old.delitem(ENTITIES, "consumer_group_consumers")
        old.setattr(_migrations, "MIGRATIONS", [m for m in _migrations.MIGRATIONS if m[0] < "008"])
        store = open_store(settings)
        store.reset()
        store.bootstrap()
        store.insert("plugins", {"name": "rate-limiting", "config": {"minute": 5}})
        store.close()
    return settings


def test_an_older_database_gets_consumer_groups(old_settings):
    store = open_store(old_settings)
    try:
        later = [name for name, _ in _migrations.MIGRATIONS if name >= "008"]
        assert store.migrations_status()["pending"] == later and later[0] == "008_consumer_groups"
        assert store.up() == later
        [plugin] = store.list("plugins")[0]
        assert plugin["consumer_group"] is None and plugin["config"]["minute"] == 5
        with pytest.raises(UniqueViolation):  # the rewritten cache key still sees the old row
            store.insert("plugins", {"name": "rate-limiting", "config": {"minute": 9}})
        group = store.insert("consumer_groups", {"name": "gold"})
        scoped = store.insert("plugins", {"name": "rate-limiting", "config": {"minute": 9},
                                          "consumer_group": {"id": group["id"]}})
        assert scoped["consumer_group"] == {"id": group["id"]}
        store.delete("consumer_groups", "gold")  # its plugins go with it (ON DELETE CASCADE)
        assert [p["id"] for p in store.list("plugins")[0]] == [plugin["id"]]
    finally:
        store.close()
