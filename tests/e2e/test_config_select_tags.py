"""`POST /config` with `_info.select_tags` on a node with a database (decK's `--select-tag`, atomic):
exactly the tagged entities are replaced in one transaction, a bad or untagged document changes
nothing, and the user's own untagged entities keep serving. A real SQLite node, real HTTP."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

TAG = "managed-by-ingress-controller"
DB_ONLY = "this endpoint is only available when meshway is configured to not use a database"


class _Origin(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = f"origin {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _doc(origin: str, *paths: str, tags=(TAG,), select=(TAG,)) -> dict:
    return {"_format_version": "3.0", "_info": {"select_tags": list(select)},
            "services": [{"name": f"tagged{i}", "url": origin, "tags": list(tags),
                          "routes": [{"name": f"tagged{i}", "paths": [p], "tags": list(tags)}]}
                         for i, p in enumerate(paths)],
            "consumers": [{"username": "tagged-user", "tags": list(tags)}]}


def _eventually(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (last := check()):
        assert time.monotonic() < deadline, f"{what}: not met in {timeout} s"
        time.sleep(0.1)
    return last


def _names(api: httpx.Client, collection: str) -> list[str]:
    return sorted(e.get("name") or e.get("username") for e in api.get(f"/{collection}").json()["data"])


@pytest.fixture
def node(node_factory):
    node = node_factory(database="sqlite")
    node.start()
    return node


def test_a_tagged_post_replaces_only_the_tagged_entities(node, origin):
    api = httpx.Client(base_url=node.admin)
    assert api.post("/services", json={"name": "mine", "url": origin}).status_code == 201
    assert api.post("/services/mine/routes", json={"name": "mine", "paths": ["/mine"]}).status_code == 201
    assert api.post("/consumers", json={"username": "me"}).status_code == 201
    # the first push adds two tagged services beside the user's own
    r = api.post("/config", json=_doc(origin, "/a", "/b"))
    assert r.status_code == 201, r.text
    assert _names(api, "services") == ["mine", "tagged0", "tagged1"]
    _eventually(lambda: httpx.get(node.proxy + "/b/x").status_code == 200, "/b proxied")
    # the second push drops one: only tagged entities are replaced; the user's keep serving
    r = api.post("/config", content=yaml_doc(origin), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert _names(api, "services") == ["mine", "tagged0"]
    assert _names(api, "routes") == ["mine", "tagged0"]
    assert _names(api, "consumers") == ["me", "tagged-user"]
    _eventually(lambda: httpx.get(node.proxy + "/b/x").status_code == 404, "/b gone")
    assert httpx.get(node.proxy + "/mine/x").text == "origin /x"  # strip_path, as Kong
    assert httpx.get(node.proxy + "/a/x").text == "origin /x"


def yaml_doc(origin: str) -> str:
    return f"""
_format_version: "3.0"
_info:
  select_tags: [{TAG}]
services:
- name: tagged0
  url: {origin}
  tags: [{TAG}]
  routes:
  - name: tagged0
    paths: [/a]
    tags: [{TAG}]
consumers:
- username: tagged-user
  tags: [{TAG}]
"""


def test_a_bad_or_untagged_document_changes_nothing(node, origin):
    api = httpx.Client(base_url=node.admin)
    assert api.post("/services", json={"name": "mine", "url": origin}).status_code == 201
    assert api.post("/config", json=_doc(origin, "/a")).status_code == 201
    before = api.get("/config?format=json").json()
    # an invalid field: 400 naming it, nothing changed
    bad = _doc(origin, "/a", "/b")
    bad["services"][1]["routes"][0]["paths"] = ["nope"]
    r = api.post("/config", json=bad)
    assert r.status_code == 400, r.text
    assert list(r.json()["fields"]) == ["services[1].routes[0].paths[0]"], r.text
    # an entity without the select tag: 400 naming it
    untagged = _doc(origin, "/a", "/b")
    untagged["services"][1]["routes"][0]["tags"] = ["other"]
    r = api.post("/config", json=untagged)
    assert r.status_code == 400, r.text
    assert r.json()["fields"] == {"services[1].routes[0].tags": f"must carry the select tags ['{TAG}']"}
    # a tagged route naming the user's untagged service: decK refuses it without lookup tags, so do we
    borrowing = _doc(origin, "/a")
    borrowing["routes"] = [{"name": "borrow", "paths": ["/borrow"], "service": {"name": "mine"}, "tags": [TAG]}]
    r = api.post("/config", json=borrowing)
    assert r.status_code == 400 and "routes[0].service" in r.json()["fields"], r.text
    # a tagged entity whose name an untagged one already has: refused, nothing changed
    clash = _doc(origin, "/a")
    clash["services"][0]["name"] = "mine"
    clash["services"][0]["routes"][0]["name"] = "mine-route"
    r = api.post("/config", json=clash)
    assert r.status_code in (400, 409), r.text
    # an empty or malformed select_tags is named
    r = api.post("/config", json={**_doc(origin, "/a"), "_info": {"select_tags": []}})
    assert (r.status_code, list(r.json()["fields"])) == (400, ["_info.select_tags"]), r.text
    # mesh resources are not tagged entities: named, not silently left out
    r = api.post("/config", json={**_doc(origin, "/a"), "mesh_resources": {"meshes": []}})
    assert (r.status_code, list(r.json()["fields"])) == (400, ["mesh_resources"]), r.text
    assert api.get("/config?format=json").json() == before


def test_an_untagged_entity_under_a_tagged_one_keeps_it(node, origin):
    """A user's route on a tagged service would go with it (cascade): the replace is refused whole."""
    api = httpx.Client(base_url=node.admin)
    assert api.post("/config", json=_doc(origin, "/a")).status_code == 201
    assert api.post("/services/tagged0/routes", json={"name": "users-own", "paths": ["/own"]}).status_code == 201
    before = api.get("/config?format=json").json()
    r = api.post("/config", json=_doc(origin))
    assert r.status_code == 400, r.text
    assert "'users-own' (service)" in r.json()["message"], r.text
    assert api.get("/config?format=json").json() == before
    # replacing the tagged service by the same one (same id) keeps the user's route on it
    assert api.post("/config", json=_doc(origin, "/a")).status_code == 201
    assert _names(api, "routes") == ["tagged0", "users-own"]


def test_without_select_tags_the_refusal_stays(node, origin):
    api = httpx.Client(base_url=node.admin)
    for body in ({"_format_version": "3.0"}, {"config": "_format_version: '3.0'"}, {"_info": {}}, "not json"):
        r = api.post("/config", json=body) if not isinstance(body, str) else api.post("/config", content=body)
        assert (r.status_code, r.json()) == (400, {"message": DB_ONLY}), body


def _team_doc(origin: str, lookup: dict | None) -> dict:
    info = {"select_tags": ["team-a"], **({"default_lookup_tags": lookup} if lookup is not None else {})}
    return {"_format_version": "3.0", "_info": info,
            "services": [{"name": "team-a", "url": origin, "tags": ["team-a"],
                          "routes": [{"name": "team-a", "paths": ["/team-a"], "tags": ["team-a"],
                                      "plugins": [{"name": "key-auth", "tags": ["team-a"]}]}]}],
            "plugins": [{"name": "rate-limiting", "consumer": "foo", "config": {"minute": 6, "policy": "local"},
                         "tags": ["team-a"]}]}


def test_default_lookup_tags_let_a_document_name_entities_another_one_manages(node, origin):
    api = httpx.Client(base_url=node.admin)
    shared = {"_format_version": "3.0", "_info": {"select_tags": ["global-consumers"]},
              "consumers": [{"username": "foo", "tags": ["global-consumers"],
                             "keyauth_credentials": [{"key": "foo-key", "tags": ["global-consumers"]}]}]}
    assert api.post("/config", json=shared).status_code == 201
    # without lookup tags, the plugin's consumer resolves inside the document only (decK's rule)
    r = api.post("/config", json=_team_doc(origin, None))
    assert r.status_code == 400
    assert r.json()["fields"] == {"plugins[0].consumer": "invalid reference 'consumer: foo' (no such entry in 'consumers')"}
    # with them, it names the consumer the other document manages, which is left as it is
    for _ in range(2):  # the same document twice: the second replace finds what the first wrote
        r = api.post("/config", json=_team_doc(origin, {"consumers": ["global-consumers"]}))
        assert r.status_code == 201, r.text
    limited = _eventually(lambda: (x := httpx.get(node.proxy + "/team-a/x", headers={"apikey": "foo-key"}))
                          .headers.get("x-ratelimit-limit-minute") and x, "foo's limit applies")
    assert limited.status_code == 200 and limited.headers["x-ratelimit-limit-minute"] == "6"
    [foo] = api.get("/consumers").json()["data"]
    assert foo["tags"] == ["global-consumers"]
    [plugin] = [p for p in api.get("/plugins").json()["data"] if p["name"] == "rate-limiting"]
    assert plugin["consumer"] == {"id": foo["id"]} and plugin["tags"] == ["team-a"]
    # the shared document's own replace is not disturbed: foo stays, the plugin follows it
    assert api.post("/config", json=shared).status_code == 201
    # bad lookup tags: named, nothing changed
    r = api.post("/config", json=_team_doc(origin, {"consumers": [], "partials": ["x"]}))
    assert r.status_code == 400
    assert set(r.json()["fields"]) == {"_info.default_lookup_tags.consumers", "_info.default_lookup_tags.partials"}
    # a lookup tag foo does not carry finds nothing: the reference fails again
    r = api.post("/config", json=_team_doc(origin, {"consumers": ["other-team"]}))
    assert r.status_code == 400 and "plugins[0].consumer" in r.json()["fields"]
    assert httpx.get(node.proxy + "/team-a/x", headers={"apikey": "foo-key"}).headers["x-ratelimit-limit-minute"] == "6"
