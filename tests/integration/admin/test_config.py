"""`POST /config` (DB-less) replaces everything atomically; invalid input is a 400 by path and the old
config stays. On a node with a database it is refused, as Kong refuses it, and nothing changes."""
from __future__ import annotations

import json

import pytest
import yaml

from meshway.admin import create_admin_app
from meshway.model import empty_snapshot, parse_declarative, snapshot_hash
from tests.integration.admin.conftest import ServerForTest, settings_for_test

GOOD = """
_format_version: "3.0"
services:
- name: cfg-svc
  url: http://backend.test:8080
  routes:
  - name: cfg-route
    paths: [/cfg]
consumers:
- username: cfg-user
  keyauth_credentials:
  - key: cfg-key
"""

BAD = """
_format_version: "3.0"
services:
- name: cfg-svc
  host: a.test
  port: 99999
  routes:
  - paths: [nope]
"""


class DblessForTest:
    """What the node gives the Admin API in DB-less mode: the live snapshot and `apply`."""

    def __init__(self) -> None:
        self.snapshot = empty_snapshot()
        self.applied = 0

    async def apply(self, snapshot: dict) -> None:
        if any(s["name"] == "explode" for s in snapshot["services"]):
            raise RuntimeError("compile failed: explode")
        self.snapshot = snapshot
        self.applied += 1


@pytest.fixture(scope="module")
def dbless_admin(tmp_path_factory, plugin_for_test):
    settings = settings_for_test(tmp_path_factory.mktemp("dbless"), database="off")
    dbless = DblessForTest()
    server = ServerForTest(create_admin_app(settings=settings, store=None, dbless=dbless, node_info={})).start()
    server.dbless = dbless
    yield server
    server.stop()


@pytest.fixture
def dbless_api(dbless_admin):
    return dbless_admin.client


def _names(api, collection):
    return sorted(e.get("name") or e.get("username") for e in api.get(f"/{collection}").json()["data"])


def test_post_config_on_a_database_node_is_400_and_changes_nothing(api):
    api.put("/services/kept-svc", json={"host": "kept.test"})
    before = api.get("/config?format=json").json()
    for body in ({"config": GOOD}, {"config": BAD}, {"_format_version": "3.0"}):
        r = api.post("/config", json=body)
        assert r.status_code == 400, r.text
        assert r.json() == {"message": "this endpoint is only available when meshway is configured to not use a database"}
    assert api.get("/config?format=json").json() == before
    assert "kept-svc" in _names(api, "services")


def test_post_config_replaces_everything(dbless_api):
    api = dbless_api
    assert api.post("/config", json={"config": "_format_version: '3.0'\nservices: [{name: old-svc, host: old.test}]"}).status_code == 201
    r = api.post("/config", json={"config": GOOD})
    assert r.status_code == 201, r.text
    assert _names(api, "services") == ["cfg-svc"] and _names(api, "consumers") == ["cfg-user"]
    assert api.get("/key-auths").json()["data"][0]["key"] == "cfg-key"
    assert snapshot_hash(r.json()) == snapshot_hash(parse_declarative(GOOD))


def test_invalid_config_is_400_by_path_and_old_config_keeps_serving(dbless_api):
    api = dbless_api
    api.post("/config", json={"config": GOOD})
    before = api.get("/config?format=json").json()
    r = api.post("/config", json={"config": BAD})
    assert r.status_code == 400
    body = r.json()
    assert (body["name"], body["code"]) == ("invalid declarative configuration", 14)
    assert body["fields"] == {"services[0].port": "value should be between 0 and 65535",
                              "services[0].routes[0].paths[0]": "should start with: / (fixed path) or ~/ (regex path)"}
    assert body["message"].startswith("declarative config is invalid: services[0].port: value should be")
    assert api.get("/config?format=json").json() == before


@pytest.mark.parametrize("send", ["json-document", "yaml-body", "form", "multipart"])
def test_post_config_accepts_kong_body_shapes(dbless_api, send):
    api = dbless_api
    doc = yaml.safe_load(GOOD)
    if send == "json-document":
        r = api.post("/config", json=doc)
    elif send == "yaml-body":
        r = api.post("/config", content=GOOD.encode(), headers={"content-type": "application/yaml"})
    elif send == "form":
        r = api.post("/config", data={"config": json.dumps(doc)})
    else:
        r = api.post("/config", files={"config": ("kong.yml", GOOD.encode())})
    assert r.status_code == 201, r.text
    assert _names(api, "services") == ["cfg-svc"]


def test_malformed_yaml_is_a_declarative_error(dbless_api):
    api = dbless_api
    r = api.post("/config", json={"config": "services: [\n"})
    assert r.status_code == 400 and r.json()["code"] == 14 and "@document" in r.json()["fields"]


def test_get_config_exports_a_document_that_reimports_identically(dbless_api):
    api = dbless_api
    api.post("/config", json={"config": GOOD})
    exported = api.get("/config").json()["config"]
    before = api.get("/config?format=json").json()
    assert api.post("/config", json={"config": exported}).status_code == 201
    assert api.get("/config?format=json").json() == before
    assert yaml.safe_load(exported)["_format_version"] == "3.0"


def test_dbless_reads_come_from_the_snapshot(dbless_admin):
    api = dbless_admin.client
    assert api.post("/config", json={"config": GOOD}).status_code == 201
    assert _names(api, "services") == ["cfg-svc"]
    assert api.get("/services/cfg-svc/routes").json()["data"][0]["name"] == "cfg-route"
    assert api.get("/routes/cfg-route/service").json()["name"] == "cfg-svc"
    status = api.get("/status").json()
    assert status["configuration_hash"] == snapshot_hash(dbless_admin.dbless.snapshot)
    assert "@document" not in api.get("/config").json()


def test_dbless_writes_are_405(dbless_admin):
    api = dbless_admin.client
    r = api.post("/services", json={"name": "x", "host": "a.test"})
    assert (r.status_code, r.json()) == (405, {"message": "cannot create 'services' entities when not using a database"})
    assert api.delete("/services/cfg-svc").json() == {"message": "cannot delete 'services' entities when not using a database"}
    assert api.patch("/services/cfg-svc", json={}).status_code == 405


def test_dbless_apply_failure_keeps_the_old_config(dbless_admin):
    api = dbless_admin.client
    api.post("/config", json={"config": GOOD})
    before = dbless_admin.dbless.snapshot
    r = api.post("/config", json={"_format_version": "3.0", "services": [{"name": "explode", "host": "a.test"}]})
    assert r.status_code == 400 and "compile failed" in r.json()["message"]
    assert dbless_admin.dbless.snapshot is before and _names(api, "services") == ["cfg-svc"]
