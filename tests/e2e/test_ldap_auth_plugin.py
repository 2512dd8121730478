"""ldap-auth end to end through `meshway start` against a real slapd started by the test:
traditional (Admin API, 400s naming the field), DB-less (declarative) and hybrid (data plane)."""
from __future__ import annotations

import base64
import json

import httpx

from tests.e2e.auth_for_test import EchoOriginForTest, eventually_for_test, hybrid_pair_for_test
from tests.fixtures.slapd import BASE_DN, slapd_for_test  # noqa: F401  (fixture)


def ldap(user: str, password: str) -> dict:
    return {"Authorization": "ldap " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def plugin(slapd) -> dict:
    return {"name": "ldap-auth", "config": {"ldap_host": "127.0.0.1", "ldap_port": slapd.port, "start_tls": True,
                                            "base_dn": BASE_DN, "attribute": "uid", "hide_credentials": True}}


def check_proxy(proxy: str) -> None:
    with httpx.Client(base_url=proxy) as client:
        ok = client.get("/dir/echo", headers=ldap("einstein", "password"))
        assert ok.status_code == 200, ok.text
        seen = ok.json()["headers"]
        assert seen["x-credential-identifier"] == "einstein" and "authorization" not in seen
        assert "x-consumer-username" not in seen
        wrong = client.get("/dir/echo", headers=ldap("einstein", "nope"))
        assert (wrong.status_code, wrong.json(), wrong.headers["www-authenticate"]) == (
            401, {"message": "Unauthorized"}, "LDAP")
        assert client.get("/dir/echo").status_code == 401
        assert client.get("/dir/echo", headers={"Authorization": "ldap " + "A" * 60000}).status_code in (400, 401, 431)
        assert client.get("/dir/echo", headers={"Authorization": "ldap %%%not-base64"}).status_code == 401
        assert client.get("/open/echo").status_code == 200


def routes(admin: httpx.Client, origin_url: str) -> None:
    assert admin.post("/services", json={"name": "s", "url": origin_url}).status_code == 201
    for name in ("dir", "open"):
        assert admin.post("/services/s/routes", json={"name": name, "paths": [f"/{name}"]}).status_code == 201


def test_traditional(node_factory, slapd_for_test):
    origin = EchoOriginForTest()
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    routes(admin, origin.url)
    conf = plugin(slapd_for_test)["config"]
    for bad, field in (({**conf, "ldaps": True}, "start_tls"), ({**conf, "ldap_port": -1}, "ldap_port"),
                       ({k: v for k, v in conf.items() if k != "base_dn"}, "base_dn")):
        refused = admin.post("/routes/dir/plugins", json={"name": "ldap-auth", "config": bad})
        assert refused.status_code == 400 and field in json.dumps(refused.json()["fields"]), refused.text
    assert admin.post("/routes/dir/plugins", json=plugin(slapd_for_test)).status_code == 201
    assert "ldap-auth" in admin.get("/").json()["plugins"]["available_on_server"]
    check_proxy(node.proxy)


def test_dbless(node_factory, slapd_for_test, tmp_path):
    origin = EchoOriginForTest()
    path = tmp_path / "kong.json"
    path.write_text(json.dumps({"_format_version": "3.0", "services": [{"name": "s", "url": origin.url, "routes": [
        {"name": "dir", "paths": ["/dir"], "plugins": [plugin(slapd_for_test)]}, {"name": "open", "paths": ["/open"]}]}]}))
    node = node_factory("dbless", database="off", declarative_config=str(path), workers="2")
    node.start()
    check_proxy(node.proxy)


def test_hybrid(node_factory, slapd_for_test, tmp_path):
    origin = EchoOriginForTest()
    cp, dp = hybrid_pair_for_test(node_factory, tmp_path)
    admin = httpx.Client(base_url=cp.admin)
    routes(admin, origin.url)
    assert admin.post("/routes/dir/plugins", json=plugin(slapd_for_test)).status_code == 201

    def every_worker_has_it():
        return all(httpx.get(dp.proxy + "/dir/echo").status_code == 401 for _ in range(6))
    eventually_for_test(every_worker_has_it, what="data plane workers have ldap-auth")
    check_proxy(dp.proxy)
