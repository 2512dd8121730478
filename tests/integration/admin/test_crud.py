"""CRUD on every entity through the Admin API: top-level, nested, by name, PUT upserts, deletes."""
from __future__ import annotations

import uuid

import pytest

from tests.fixtures.certs import cert_pair_for_test


def _name() -> str:
    return "n" + uuid.uuid4().hex[:10]


def test_service_crud_by_id_and_name(api):
    name = _name()
    created = api.post("/services", json={"name": name, "host": "a.test"}).json()
    assert api.get(f"/services/{name}").json() == created
    assert api.get(f"/services/{created['id']}").json() == created
    patched = api.patch(f"/services/{name}", json={"retries": 2})
    assert patched.status_code == 200 and patched.json()["retries"] == 2 and patched.json()["host"] == "a.test"
    put = api.put(f"/services/{name}", json={"host": "b.test"})
    assert put.status_code == 200 and put.json()["retries"] == 5 and put.json()["id"] == created["id"]
    assert api.delete(f"/services/{name}").status_code == 204
    assert api.get(f"/services/{name}").status_code == 404
    assert api.delete(f"/services/{name}").status_code == 204  # Kong: deleting nothing is not an error


def test_route_service_endpoint(api):
    name = _name()
    svc = api.post("/services", json={"name": name, "host": "a.test"}).json()
    route = api.post(f"/services/{name}/routes", json={"paths": ["/x"], "name": name}).json()
    assert api.get(f"/routes/{name}/service").json() == svc
    patched = api.patch(f"/routes/{name}/service", json={"port": 8080}).json()
    assert patched["port"] == 8080 and patched["id"] == svc["id"]
    listed = api.get(f"/services/{svc['id']}/routes").json()["data"]
    assert [r["id"] for r in listed] == [route["id"]]
    assert api.get(f"/services/{name}/routes/{route['id']}").json() == route


def test_nested_item_must_belong_to_the_parent(api):
    a, b = _name(), _name()
    for n in (a, b):
        api.post("/services", json={"name": n, "host": "a.test"})
    route = api.post(f"/services/{a}/routes", json={"paths": ["/"]}).json()
    assert api.get(f"/services/{b}/routes/{route['id']}").status_code == 404
    assert api.post("/services/missing-service/routes", json={"paths": ["/"]}).status_code == 404


def test_plugins_global_and_scoped(api):
    name = _name()
    api.post("/services", json={"name": name, "host": "a.test"})
    r = api.post(f"/services/{name}/plugins", data={"name": "limits-for-test", "config.minute": "5"})
    assert r.status_code == 201, r.text
    plugin = r.json()
    assert plugin["config"] == {"minute": 5, "policy": "local", "allow": None} and plugin["service"]["id"]
    assert [p["id"] for p in api.get(f"/services/{name}/plugins").json()["data"]] == [plugin["id"]]
    again = api.post(f"/services/{name}/plugins", json={"name": "limits-for-test"})
    assert again.status_code == 409 and again.json()["code"] == 5
    assert "limits-for-test" in api.get("/plugins/enabled").json()["enabled_plugins"]
    assert api.patch(f"/plugins/{plugin['id']}", json={"enabled": False}).json()["enabled"] is False


def test_upstream_targets(api):
    name = _name()
    up = api.post("/upstreams", json={"name": name}).json()
    assert up["algorithm"] == "round-robin" and up["healthchecks"]["active"]["concurrency"] == 10
    t = api.post(f"/upstreams/{name}/targets", data={"target": "10.0.0.1:80", "weight": "50"})
    assert t.status_code == 201 and t.json()["weight"] == 50 and t.json()["upstream"] == {"id": up["id"]}
    assert api.get(f"/upstreams/{name}/targets/10.0.0.1:80").json()["id"] == t.json()["id"]
    assert len(api.get(f"/upstreams/{name}/targets").json()["data"]) == 1
    assert api.delete(f"/upstreams/{name}").status_code == 204
    assert api.get(f"/targets/{t.json()['id']}").status_code == 404  # cascaded


@pytest.mark.parametrize("path, body, key", [
    ("key-auth", {"key": "k-" + uuid.uuid4().hex}, "key"),
    ("basic-auth", {"username": "u-" + uuid.uuid4().hex, "password": "pw"}, "username"),
    ("jwt", {"key": "iss-" + uuid.uuid4().hex}, "key"),
    ("acls", {"group": "admins"}, "group"),
])
def test_consumer_credentials(api, path, body, key):
    username = _name()
    consumer = api.post("/consumers", json={"username": username}).json()
    r = api.post(f"/consumers/{username}/{path}", json=body)
    assert r.status_code == 201, r.text
    cred = r.json()
    assert cred["consumer"] == {"id": consumer["id"]} and cred[key] == body[key]
    top = {"key-auth": "key-auths", "basic-auth": "basic-auths", "jwt": "jwts", "acls": "acls"}[path]
    assert cred["id"] in [c["id"] for c in api.get(f"/{top}?size=1000").json()["data"]]
    assert api.get(f"/consumers/{username}/{path}/{cred['id']}").json() == cred
    assert api.delete(f"/consumers/{username}").status_code == 204
    assert api.get(f"/{top}/{cred['id']}").status_code == 404


def test_basic_auth_password_is_not_returned_in_clear(api):
    username = _name()
    api.post("/consumers", json={"username": username})
    cred = api.post(f"/consumers/{username}/basic-auth", json={"username": username, "password": "s3cret"}).json()
    assert cred["password"] != "s3cret"


def test_certificates_and_snis(api):
    cert, key = cert_pair_for_test()
    c = api.post("/certificates", json={"cert": cert, "key": key})
    assert c.status_code == 201
    sni = api.post(f"/certificates/{c.json()['id']}/snis", json={"name": f"{_name()}.test"})
    assert sni.status_code == 201 and sni.json()["certificate"] == {"id": c.json()["id"]}
    assert api.get(f"/snis/{sni.json()['name']}").json()["id"] == sni.json()["id"]
    assert api.delete(f"/certificates/{c.json()['id']}").status_code == 204
    assert api.get(f"/snis/{sni.json()['id']}").status_code == 404


def test_certificate_upload_as_multipart(api):
    cert, key = cert_pair_for_test()
    r = api.post("/certificates", files={"cert": ("cert.pem", cert.encode()), "key": ("key.pem", key.encode())})
    assert r.status_code == 201 and r.json()["cert"] == cert


def test_ca_certificates(api):
    ca, _ = cert_pair_for_test("ca.test", ca=True)
    r = api.post("/ca_certificates", json={"cert": ca})
    assert r.status_code == 201 and len(r.json()["cert_digest"]) == 64


def test_schemas_endpoints(api):
    schema = api.get("/schemas/services").json()
    fields = {list(f)[0]: list(f.values())[0] for f in schema["fields"]}
    assert fields["retries"]["default"] == 5 and fields["protocol"]["required"] is True
    assert api.get("/schemas/key-auths").json()["name"] == "keyauth_credentials"
    assert api.get("/schemas/nothing").status_code == 404
    plugin = api.get("/schemas/plugins/limits-for-test").json()
    assert "minute" in plugin["fields"][0]["config"]["json_schema"]["properties"]
    assert api.get("/schemas/plugins/nothing").status_code == 404
    # Kong's plugin `protocols` field: HTTP-only plugins, and those that run on streams too
    key_auth = api.get("/schemas/plugins/key-auth").json()["fields"][1]["protocols"]
    assert key_auth["elements"]["one_of"] == ["grpc", "grpcs", "http", "https", "ws", "wss"]
    ip = api.get("/schemas/plugins/ip-restriction").json()["fields"][1]["protocols"]
    assert ip["default"] == ["http", "https", "tcp", "tls", "grpc", "grpcs"] and "udp" in ip["elements"]["one_of"]
    ok = api.post("/schemas/routes/validate", json={"paths": ["/"]})
    assert ok.status_code == 200
    assert api.post("/schemas/routes/validate", json={"paths": ["x"]}).json()["code"] == 2


def test_certificate_snis_shorthand(api):
    cert, key = cert_pair_for_test()
    a, b, c = (f"{_name()}.test" for _ in range(3))
    r = api.post("/certificates", files={"cert": ("c.pem", cert.encode()), "key": ("k.pem", key.encode()),
                                        "snis": (None, a)})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["snis"] == [a] and api.get(f"/snis/{a}").json()["certificate"] == {"id": created["id"]}
    patched = api.patch(f"/certificates/{created['id']}", json={"snis": [b, c]}).json()
    assert patched["snis"] == sorted([b, c]) and api.get(f"/snis/{a}").status_code == 404
    assert api.get(f"/certificates/{created['id']}").json()["snis"] == sorted([b, c])


def test_certificate_snis_shorthand_errors_lose_nothing(api):
    cert, key = cert_pair_for_test()
    taken = f"{_name()}.test"
    first = api.post("/certificates", json={"cert": cert, "key": key, "snis": [taken]}).json()
    count = len(api.get("/certificates?size=1000").json()["data"])
    r = api.post("/certificates", json={"cert": cert, "key": key, "snis": [taken]})
    assert r.status_code == 409 and r.json()["message"] == f"UNIQUE violation detected on '{{name=\"{taken}\"}}'"
    r = api.post("/certificates", json={"cert": cert, "key": key, "snis": ["10.0.0.1"]})
    assert r.status_code == 400 and r.json()["fields"] == {"snis": ["must not be an IP"]}
    assert len(api.get("/certificates?size=1000").json()["data"]) == count  # refused writes left nothing behind
    assert api.get(f"/snis/{taken}").json()["certificate"] == {"id": first["id"]}


def test_credentials_by_their_endpoint_keys(api):
    username = _name()
    api.post("/consumers", json={"username": username})
    key = "k-" + uuid.uuid4().hex
    cred = api.post(f"/consumers/{username}/key-auth", json={"key": key}).json()
    assert api.get(f"/key-auths/{key}").json()["id"] == cred["id"]
    acl = api.post(f"/consumers/{username}/acls", data={"group": "ops"}).json()
    assert api.get(f"/consumers/{username}/acls/ops").json()["id"] == acl["id"]
    assert api.delete(f"/consumers/{username}/acls/ops").status_code == 204
    assert api.get(f"/consumers/{username}/acls").json()["data"] == []


def test_trailing_slash_is_the_same_endpoint(api):
    name = _name()
    r = api.post("/services/", data={"name": name, "host": "a.test"})
    assert r.status_code == 201
    assert api.get(f"/services/{name}/").json()["name"] == name


def test_plugin_protocols_must_match_its_route_or_service(api):
    # Kong's plugins DAO (check_protocols_match): a plugin must be able to run where it is scoped
    svc = api.post("/services", json={"name": _name(), "url": "http://127.0.0.1:9"}).json()
    http = api.post(f"/services/{svc['id']}/routes", json={"paths": [f"/{_name()}"]}).json()
    ws = api.post(f"/services/{svc['id']}/routes", json={"paths": [f"/{_name()}"], "protocols": ["ws", "wss"]}).json()
    r = api.post(f"/routes/{http['id']}/plugins", json={"name": "key-auth", "protocols": ["ws"]})
    assert r.status_code == 400, r.text
    assert r.json()["fields"] == {"protocols": "must match the associated route's protocols"}
    # on a ws route: ws/wss, or HTTP protocols (they run there as for http/https), not grpc alone
    assert api.post(f"/routes/{ws['id']}/plugins", json={"name": "key-auth", "protocols": ["wss"]}).status_code == 201
    assert api.post(f"/routes/{ws['id']}/plugins", json={"name": "cors"}).status_code == 201  # HTTP defaults
    r = api.post(f"/routes/{ws['id']}/plugins", json={"name": "acl", "config": {"allow": ["a"]}, "protocols": ["grpc"]})
    assert r.json()["fields"] == {"protocols": "must match the associated route's protocols"}, r.text
    # a service: at least one of its routes; an update is checked too, and changes nothing when refused
    ok = api.post(f"/services/{svc['id']}/plugins", json={"name": "key-auth", "protocols": ["ws"]})
    assert ok.status_code == 201, ok.text
    r = api.patch(f"/plugins/{ok.json()['id']}", json={"protocols": ["grpcs"]})
    assert r.status_code == 400 and r.json()["fields"] == {
        "protocols": "must match the protocols of at least one route pointing to this Plugin's service"}, r.text
    assert api.get(f"/plugins/{ok.json()['id']}").json()["protocols"] == ["ws"]
    lonely = api.post("/services", json={"name": _name(), "url": "http://127.0.0.1:9"}).json()
    assert api.post(f"/services/{lonely['id']}/plugins", json={"name": "key-auth", "protocols": ["grpc"]}).status_code == 201
