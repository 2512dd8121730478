"""The same Admin API over PostgreSQL: the walkthrough calls and Kong's errors do not depend on the backend."""
from __future__ import annotations

import pytest

from meshway.admin import create_admin_app
from meshway.store import open_store
from tests.integration.admin.conftest import ServerForTest, settings_for_test

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_api(postgres_db, tmp_path_factory, plugin_for_test):
    settings = settings_for_test(tmp_path_factory.mktemp("pg-admin"), **postgres_db.settings())
    store = open_store(settings)
    store.reset()
    store.bootstrap()
    server = ServerForTest(create_admin_app(settings=settings, store=store, node_info={})).start()
    yield server.client
    server.stop()
    store.close()


def test_walkthrough_calls_on_postgres(pg_api):
    svc = pg_api.post("/services", json={"name": "test", "host": "httpbin.org"})
    assert svc.status_code == 201 and svc.json()["port"] == 80
    route = pg_api.post("/services/test/routes", json={"paths": ["/"]})
    assert route.status_code == 201 and route.json()["service"] == {"id": svc.json()["id"]}
    assert pg_api.post("/services", json={"name": "test", "host": "x.test"}).status_code == 409
    refused = pg_api.delete("/services/test")
    assert refused.status_code == 400 and refused.json()["name"] == "foreign key violation"
    assert pg_api.get("/status").json()["database"] == {"reachable": True}
    assert pg_api.get("/").json()["configuration"]["database"] == "postgres"
