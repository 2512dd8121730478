"""Consumer groups (Kong Enterprise's entity, which KIC's KongConsumerGroup needs): the Admin API's
membership endpoints, plugins scoped to a group with Kong's precedence, and decK's declarative spelling.
Real nodes (SQLite, and DB-less), real HTTP through their proxies; which rate-limiting instance applies
is read from the X-RateLimit-Limit-Minute header the client sees."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml


class _Origin(BaseHTTPRequestHandler):
    """Answers with the groups headers it was sent, so a test reads what the proxy forwarded."""

    def do_GET(self):  # noqa: N802
        body = json.dumps({h: self.headers.get(h) for h in ("X-Consumer-Groups", "X-Authenticated-Groups")}).encode()
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


def _limit(node, key: str) -> str | None:
    r = httpx.get(node.proxy + "/api/x", headers={"apikey": key})
    assert r.status_code == 200, r.text
    return r.headers.get("x-ratelimit-limit-minute")


def _eventually(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (last := check()):
        assert time.monotonic() < deadline, f"{what}: not met in {timeout} s"
        time.sleep(0.1)
    return last


def _rl(minute: int, **scope) -> dict:
    return {"name": "rate-limiting", "config": {"minute": minute, "policy": "local"}, **scope}


def test_group_scoped_plugins_follow_kongs_precedence(node_factory, origin):
    node = node_factory(database="sqlite")
    node.start()
    api = httpx.Client(base_url=node.admin)
    assert api.post("/services", json={"name": "api", "url": origin}).status_code == 201
    route = api.post("/services/api/routes", json={"name": "api", "paths": ["/api"]}).json()
    assert api.post("/routes/api/plugins", json={"name": "key-auth"}).status_code == 201
    for user in ("alice", "bob", "carol"):
        assert api.post("/consumers", json={"username": user}).status_code == 201
        assert api.post(f"/consumers/{user}/key-auth", json={"key": f"{user}-key"}).status_code == 201
    for group in ("gold", "silver"):
        assert api.post("/consumer_groups", json={"name": group}).status_code == 201

    # memberships: a list is added whole or not at all
    r = api.post("/consumer_groups/gold/consumers", json={"consumer": ["alice", "nobody"]})
    assert (r.status_code, r.json()["message"]) == (404, "Consumer 'nobody' not found")
    assert api.get("/consumer_groups/gold/consumers").json()["data"] == []
    r = api.post("/consumer_groups/gold/consumers", json={"consumer": ["alice", "carol"]})
    assert r.status_code == 201, r.text
    assert sorted(c["username"] for c in r.json()["consumers"]) == ["alice", "carol"]
    assert r.json()["consumer_group"]["name"] == "gold"
    r = api.post("/consumer_groups/gold/consumers", json={"consumer": "alice"})
    assert r.status_code == 409 and r.json()["message"].startswith("Consumer 'alice' already in group"), r.text
    r = api.post("/consumers/carol/consumer_groups", json={"group": "silver"})
    assert r.status_code == 201, r.text
    assert sorted(g["name"] for g in api.get("/consumers/carol/consumer_groups").json()["data"]) == ["gold", "silver"]
    r = api.post("/consumers/carol/consumer_groups", json={"group": ["silver"]})
    assert (r.status_code, r.json()["message"]) == (409, "Consumer 'carol' already in group 'silver'")
    assert api.post("/consumers/carol/consumer_groups", json={}).json()["message"] == "must provide group"
    assert api.get("/consumers/bob/consumer_groups/gold").status_code == 404
    assert api.get("/consumer_groups/gold/consumers/alice").json()["consumer"]["username"] == "alice"

    # a group's plugin applies to its members only
    assert api.post("/consumer_groups/gold/plugins", json=_rl(2)).status_code == 201
    shown = api.get("/consumer_groups/gold").json()
    assert [p["name"] for p in shown["plugins"]] == ["rate-limiting"]
    assert sorted(c["username"] for c in shown["consumers"]) == ["alice", "carol"]
    assert _limit(node, "alice-key") == "2"
    assert _limit(node, "bob-key") is None
    # Kong's order: consumer > group; group+route > consumer; a consumer in two groups: by group name
    assert api.post("/consumers/alice/plugins", json=_rl(7)).status_code == 201
    assert _limit(node, "alice-key") == "7"
    assert api.post("/plugins", json=_rl(3, consumer_group={"name": "gold"}, route={"id": route["id"]})).status_code == 201
    assert _limit(node, "alice-key") == "3"
    assert api.post("/consumer_groups/silver/plugins", json=_rl(5, route={"id": route["id"]})).status_code == 201
    assert _limit(node, "carol-key") == "3"  # gold before silver
    # authentication plugins cannot be scoped to a group, as in Kong
    r = api.post("/consumer_groups/gold/plugins", json={"name": "key-auth"})
    assert r.status_code == 400 and r.json()["fields"] == {"consumer_group": "value must be null"}, r.text

    # leaving the group, then deleting it (memberships and its plugins go with it)
    assert api.delete("/consumers/carol/consumer_groups/gold").status_code == 204
    assert _limit(node, "carol-key") == "5"
    assert api.delete("/consumer_groups/silver").status_code == 204
    assert _limit(node, "carol-key") is None
    assert api.get("/consumers/carol/consumer_groups").json()["data"] == []
    assert api.delete("/consumer_groups/gold/consumers").status_code == 204
    assert _limit(node, "alice-key") == "7"
    assert api.get("/consumer_groups/gold/consumers").json()["data"] == []
    # the export keeps the group and its plugins; it has no memberships left
    exported = yaml.safe_load(api.get("/config").json()["config"])
    assert [g["name"] for g in exported["consumer_groups"]] == ["gold"]
    assert sum(1 for p in exported["plugins"] if p.get("consumer_group")) == 2  # gold, gold+route
    assert "consumer_group_consumers" not in exported


DECK_FILE = """
_format_version: "3.0"
services:
- name: api
  url: {origin}
  routes:
  - name: api
    paths: [/api]
    plugins:
    - name: key-auth
consumer_groups:
- name: gold
  plugins:
  - name: rate-limiting
    config: {{minute: 4, policy: local}}
  consumers:
  - username: alice
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
- username: bob
  keyauth_credentials: [{{key: bob-key}}]
  groups:
  - name: gold
- username: carol
  keyauth_credentials: [{{key: carol-key}}]
"""


def test_a_deck_file_with_consumer_groups_on_a_dbless_node(node_factory, origin, tmp_path):
    path = tmp_path / "kong.yml"
    path.write_text(DECK_FILE.format(origin=origin))
    node = node_factory(database="off", declarative_config=str(path))
    node.start()
    _eventually(lambda: httpx.get(node.proxy + "/api/x", headers={"apikey": "alice-key"}).status_code == 200, "loaded")
    assert _limit(node, "alice-key") == "4"
    assert _limit(node, "bob-key") == "4"
    assert _limit(node, "carol-key") is None
    groups = httpx.get(node.admin + "/consumers/bob/consumer_groups").json()["data"]
    assert [(g["name"], g["consumers_count"]) for g in groups] == [("gold", 2)]
    counted = httpx.get(node.admin + "/consumer_groups", params={"counter": "true"}).json()["data"]
    assert [(g["name"], g["consumers_count"]) for g in counted] == [("gold", 2)]
    # a membership naming a group the file does not declare: refused, naming it; the running config stays
    bad = DECK_FILE.format(origin=origin).replace("  - name: gold\n- username: carol", "  - name: platinum\n- username: carol")
    r = httpx.post(node.admin + "/config", content=bad, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400, r.text
    assert r.json()["fields"]["consumers[1].groups[0].consumer_group"] == (
        "invalid reference 'consumer_group: platinum' (no such entry in 'consumer_groups')")
    assert _limit(node, "bob-key") == "4"


def test_counters_and_the_groups_header_kong_enterprise_sends(node_factory, origin):
    node = node_factory(database="sqlite")
    node.start()
    api = httpx.Client(base_url=node.admin)
    assert api.post("/services", json={"name": "api", "url": origin}).status_code == 201
    assert api.post("/services/api/routes", json={"name": "api", "paths": ["/api"]}).status_code == 201
    assert api.post("/routes/api/plugins", json={"name": "key-auth"}).status_code == 201
    for user in ("alice", "bob", "carol"):
        assert api.post("/consumers", json={"username": user}).status_code == 201
        assert api.post(f"/consumers/{user}/key-auth", json={"key": f"{user}-key"}).status_code == 201
    for group in ("gold", "silver", "bronze"):
        assert api.post("/consumer_groups", json={"name": group}).status_code == 201
    assert api.post("/consumer_groups/gold/consumers", json={"consumer": ["alice", "carol"]}).status_code == 201
    assert api.post("/consumers/alice/consumer_groups", json={"group": "silver"}).status_code == 201
    assert api.post("/consumers/bob/acls", json={"group": "partners"}).status_code == 201

    # GET /consumer_groups?counter=true: each group with its number of consumers (Kong Enterprise)
    listed = api.get("/consumer_groups", params={"counter": "true"}).json()["data"]
    assert {g["name"]: g["consumers_count"] for g in listed} == {"gold": 2, "silver": 1, "bronze": 0}
    assert all("consumers_count" not in g for g in api.get("/consumer_groups").json()["data"])
    page = api.get("/consumer_groups", params={"counter": "true", "size": 2}).json()
    assert len(page["data"]) == 2 and "counter=true" in page["next"] and "offset=" in page["next"]
    rest = api.get(page["next"]).json()["data"]
    assert {g["name"] for g in page["data"] + rest} == {"gold", "silver", "bronze"}
    shown = api.get("/consumer_groups/gold", params={"counter": "true"}).json()
    assert shown["consumer_group"]["consumers_count"] == 2 and len(shown["consumers"]) == 2
    assert "consumers_count" not in api.get("/consumer_groups/gold").json()["consumer_group"]
    # the consumer's side lists its groups with their counts, as Kong does
    mine = api.get("/consumers/alice/consumer_groups").json()["data"]
    assert {g["name"]: g["consumers_count"] for g in mine} == {"gold": 2, "silver": 1}

    # acl with include_consumer_groups: group names decide and travel upstream in X-Consumer-Groups
    acl = api.post("/routes/api/plugins", json={"name": "acl", "config": {
        "allow": ["gold", "partners"], "include_consumer_groups": True}})
    assert acl.status_code == 201, acl.text

    def seen(key: str, forged: str = "admins") -> httpx.Response:
        return httpx.get(node.proxy + "/api/x", headers={"apikey": key, "X-Consumer-Groups": forged})

    _eventually(lambda: seen("alice-key").status_code == 200, "acl applied")
    assert seen("alice-key").json()["X-Consumer-Groups"] == "gold, silver"
    assert seen("bob-key").json()["X-Consumer-Groups"] == "partners"
    assert seen("carol-key").json()["X-Consumer-Groups"] == "gold"
    # leaving the group takes the name away at once: carol is refused
    assert api.delete("/consumer_groups/gold/consumers/carol").status_code == 204
    _eventually(lambda: seen("carol-key").status_code == 403, "membership removed")
    assert seen("carol-key").json() == {"message": "You cannot consume this service"}
    # without include_consumer_groups, consumer groups are not acl groups (Kong's default)
    assert api.patch(f"/plugins/{acl.json()['id']}", json={"config": {"include_consumer_groups": False}}).status_code == 200
    _eventually(lambda: seen("alice-key").status_code == 403, "include_consumer_groups off")
    assert seen("bob-key").json()["X-Consumer-Groups"] == "partners"
