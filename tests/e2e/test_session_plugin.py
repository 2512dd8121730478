"""session end to end through `meshway start`, Kong's documented setup: session + key-auth with an
`anonymous` consumer + request-termination for that consumer. A key logs in (Set-Cookie), the
cookie alone then passes, logout clears it; traditional, DB-less and hybrid."""
from __future__ import annotations

import json

import httpx

from tests.e2e.auth_for_test import EchoOriginForTest, eventually_for_test, hybrid_pair_for_test

SESSION = {"name": "session", "config": {"secret": "a-long-secret", "cookie_secure": False}}
KEY_AUTH = {"name": "key-auth", "config": {"anonymous": "anon"}}
TERMINATION = {"name": "request-termination", "config": {"status_code": 403, "message": "log in first"}}


def cookie_of(response: httpx.Response) -> str:
    return response.headers["set-cookie"].split(";")[0]


def check_proxy(proxy: str) -> None:
    with httpx.Client(base_url=proxy) as client:
        assert client.get("/app/echo").status_code == 403
        login = client.get("/app/echo", headers={"apikey": "bob-key"})
        assert login.status_code == 200 and login.json()["headers"]["x-consumer-username"] == "bob", login.text
        assert "HttpOnly" in login.headers["set-cookie"] and "SameSite=Strict" in login.headers["set-cookie"]
        cookie = cookie_of(login)
        for _ in range(3):  # any worker opens it
            with httpx.Client(base_url=proxy) as fresh:
                seen = fresh.get("/app/echo", headers={"Cookie": cookie})
                assert seen.status_code == 200 and seen.json()["headers"]["x-consumer-username"] == "bob", seen.text
        name, value = cookie.split("=", 1)
        assert client.get("/app/echo", headers={"Cookie": f"{name}={value[:-4]}AAAA"}).status_code == 403
        assert client.get("/app/echo", headers={"Cookie": f"{name}=" + "A" * 20000}).status_code in (400, 403, 431)
        out = client.delete("/app/echo?session_logout=true", headers={"Cookie": cookie})
        assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]


def setup_admin(admin: httpx.Client, origin_url: str) -> None:
    assert admin.post("/services", json={"name": "s", "url": origin_url}).status_code == 201
    assert admin.post("/services/s/routes", json={"name": "app", "paths": ["/app"]}).status_code == 201
    for username in ("bob", "anon"):
        assert admin.post("/consumers", json={"username": username}).status_code == 201
    assert admin.post("/consumers/bob/key-auth", json={"key": "bob-key"}).status_code == 201
    assert admin.post("/routes/app/plugins", json=SESSION).status_code == 201
    assert admin.post("/routes/app/plugins", json=KEY_AUTH).status_code == 201
    assert admin.post("/consumers/anon/plugins", json=TERMINATION).status_code == 201


def test_traditional(node_factory):
    origin = EchoOriginForTest()
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    refused = admin.post("/plugins", json={"name": "session", "config": {"storage": "kong"}})
    assert refused.status_code == 400 and "storage" in refused.json()["fields"]["config"], refused.text
    refused = admin.post("/plugins", json={"name": "session", "config": {"logout_methods": ["PATCH"]}})
    assert refused.status_code == 400 and "logout_methods" in refused.json()["fields"]["config"], refused.text
    setup_admin(admin, origin.url)
    assert "session" in admin.get("/").json()["plugins"]["available_on_server"]
    stored = admin.get("/routes/app/plugins").json()["data"]
    assert next(p for p in stored if p["name"] == "session")["config"]["idling_timeout"] == 900
    check_proxy(node.proxy)


def test_dbless(node_factory, tmp_path):
    origin = EchoOriginForTest()
    path = tmp_path / "kong.json"
    path.write_text(json.dumps({
        "_format_version": "3.0",
        "services": [{"name": "s", "url": origin.url, "routes": [{"name": "app", "paths": ["/app"],
                                                                  "plugins": [SESSION, KEY_AUTH]}]}],
        "consumers": [{"username": "bob", "keyauth_credentials": [{"key": "bob-key"}]},
                      {"username": "anon", "plugins": [TERMINATION]}]}))
    node = node_factory("dbless", database="off", declarative_config=str(path), workers="2")
    node.start()
    check_proxy(node.proxy)


def test_hybrid(node_factory, tmp_path):
    origin = EchoOriginForTest()
    cp, dp = hybrid_pair_for_test(node_factory, tmp_path)
    setup_admin(httpx.Client(base_url=cp.admin), origin.url)
    eventually_for_test(lambda: all(httpx.get(dp.proxy + "/app/echo").status_code == 403 for _ in range(6))
                        and httpx.get(dp.proxy + "/app/echo", headers={"apikey": "bob-key"}).headers.get("set-cookie"),
                        what="data plane workers have the session config")
    check_proxy(dp.proxy)
