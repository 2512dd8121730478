"""Bad input through the Admin API: Kong's status codes and bodies, the field named, nothing lost."""
from __future__ import annotations

import uuid

import pytest

MISSING_ID = "0f9c9a1e-6b8a-4c55-8f4e-0a1b2c3d4e5f"


@pytest.mark.parametrize("path, body, field, message", [
    ("/services", {"host": "a.test", "port": 70000}, "port", "value should be between 0 and 65535"),
    ("/services", {"host": "a.test", "retries": "many"}, "retries", "expected an integer"),
    ("/services", {"host": "a.test", "colour": "red"}, "colour", "unknown field"),
    ("/services", {"port": 80}, "host", "required field missing"),
    ("/routes", {"paths": ["/"], "strip_path": "yes"}, "strip_path", "expected a boolean"),
    ("/routes", {"paths": ["/"], "regex_priority": 1.5}, "regex_priority", "expected an integer"),
    ("/routes", {"paths": ["/"], "protocols": ["ftp"]}, "protocols",
     ["expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss"]),
    ("/upstreams", {"name": "u-" + uuid.uuid4().hex[:6], "slots": 1}, "slots", "value should be between 10 and 65536"),
    ("/upstreams", {"name": "u", "healthchecks": {"active": {"concurrency": 0}}}, "healthchecks",
     {"active": {"concurrency": "value should be between 1 and 2147483647"}}),
    ("/targets", {"target": "a.test", "upstream": {"id": MISSING_ID}, "weight": -1}, "weight",
     "value should be between 0 and 65535"),
    ("/consumers", {"username": 5}, "username", "expected a string"),
    ("/certificates", {"cert": "x", "key": "y"}, "cert", "invalid certificate: Unable to load PEM file. See https://cryptography.io/en/latest/faq/#why-can-t-i-import-my-pem-file for more details. MalformedFraming"),
    ("/snis", {"name": "a.test"}, "certificate", "required field missing"),
    ("/ca_certificates", {}, "cert", "required field missing"),
    ("/key-auths", {"key": "k"}, "consumer", "required field missing"),
    ("/basic-auths", {"consumer": {"id": MISSING_ID}, "username": "u"}, "password", "required field missing"),
    ("/jwts", {"consumer": {"id": MISSING_ID}, "algorithm": "none"}, "algorithm", None),
    ("/acls", {"consumer": {"id": MISSING_ID}, "group": ""}, "group", "length must be at least 1"),
    ("/plugins", {"name": "limits-for-test", "config": {"minute": "x"}}, "config", None),
    ("/plugins", {"name": "not-installed"}, "name", "plugin 'not-installed' not enabled; is it installed?"),
    ("/plugins", {"name": "key-auth", "protocols": ["tcp"]}, "protocols",
     ["expected one of: grpc, grpcs, http, https, ws, wss"]),
])
def test_schema_violations_per_entity(api, path, body, field, message):
    r = api.post(path, json=body)
    assert r.status_code == 400, r.text
    out = r.json()
    assert (out["code"], out["name"]) == (2, "schema violation")
    assert field in out["fields"] and out["message"].startswith(("schema violation (", "2 schema violations ("))
    if message is not None:
        assert out["fields"][field] == message


def test_one_message_names_the_field(api):
    r = api.post("/services", json={"host": "a.test", "port": 70000})
    assert r.json() == {"message": "schema violation (port: value should be between 0 and 65535)",
                        "name": "schema violation", "code": 2, "fields": {"port": "value should be between 0 and 65535"}}


def test_bad_reference(api):
    r = api.post("/routes", json={"paths": ["/"], "service": {"id": MISSING_ID}})
    assert r.status_code == 400
    assert r.json()["message"] == f"the foreign key '{{id=\"{MISSING_ID}\"}}' does not reference an existing 'services' entity."
    assert r.json()["name"] == "foreign key violation"
    assert api.post("/key-auths", json={"consumer": {"id": MISSING_ID}}).status_code == 400


def test_unique_violation_is_409(api):
    name = "dup-" + uuid.uuid4().hex[:6]
    assert api.post("/services", json={"name": name, "host": "a.test"}).status_code == 201
    r = api.post("/services", json={"name": name, "host": "b.test"})
    assert r.status_code == 409
    assert r.json() == {"code": 5, "name": "unique constraint violation", "fields": {"name": name},
                        "message": f"UNIQUE violation detected on '{{name=\"{name}\"}}'"}


def test_delete_of_referenced_service_is_refused_and_nothing_is_lost(api):
    name = "ref-" + uuid.uuid4().hex[:6]
    api.post("/services", json={"name": name, "host": "a.test"})
    api.post(f"/services/{name}/routes", json={"paths": ["/"]})
    r = api.delete(f"/services/{name}")
    assert r.status_code == 400
    assert r.json()["message"] == "an existing 'routes' entity references this 'services' entity"
    assert api.get(f"/services/{name}").status_code == 200


def test_malformed_bodies(api):
    r = api.post("/services", content=b'{"host": ', headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (400, {"message": "Cannot parse JSON body"})
    r = api.post("/services", content=b"host=a.test", headers={"content-type": "text/csv"})
    assert (r.status_code, r.json()) == (415, {"message": "Unsupported Content Type"})
    r = api.post("/services", content=b"host=\xff\xfe", headers={"content-type": "application/x-www-form-urlencoded"})
    assert (r.status_code, r.json()) == (400, {"message": "Cannot parse form body"})
    r = api.post("/services", json=["host", "a.test"])
    assert r.status_code == 400 and r.json()["fields"] == {"@entity": ["expected a record"]}


def test_bad_form_values_name_the_field(api):
    r = api.post("/services", data={"host": "a.test", "port": "eighty", "connect_timeout": "0"})
    assert r.status_code == 400
    assert r.json()["fields"] == {"port": "expected an integer", "connect_timeout": "value should be between 1 and 2147483646"}
    r = api.post("/routes", data={"protocols": "tcp", "destinations[1].port": "x"})
    assert r.json()["fields"] == {"destinations": [{"port": "expected an integer"}]}


def test_array_errors_come_back_as_positions(api):
    r = api.post("/routes", json={"paths": ["/ok", "bad"]})
    assert r.json()["fields"] == {"paths": [None, "should start with: / (fixed path) or ~/ (regex path)"]}


def test_not_found_and_method_not_allowed(api):
    assert (api.get("/services/nothing-here").status_code, api.get("/services/nothing-here").json()) == (404, {"message": "Not found"})
    assert api.get("/no/such/endpoint").json() == {"message": "Not found"}
    r = api.delete("/services")
    assert (r.status_code, r.json()) == (405, {"message": "Method not allowed"})
    assert api.patch(f"/services/{MISSING_ID}", json={"retries": 1}).status_code == 404


def test_bad_pagination_options(api):
    r = api.get("/services?size=0")
    assert r.status_code == 400 and r.json()["message"] == "size must be an integer between 1 and 1000"
    r = api.get("/services?size=many")
    assert r.status_code == 400 and r.json()["name"] == "invalid size"
    r = api.get("/services?offset=%%%")
    assert r.status_code == 400 and r.json()["name"] == "invalid offset"
    r = api.get("/services?tags=a,b/c")
    assert r.status_code == 400 and "cannot mix" in r.json()["message"]


def test_put_and_patch_with_a_non_object_body(api):
    name = "arr-" + uuid.uuid4().hex[:6]
    api.post("/services", json={"name": name, "host": "a.test"})
    for method in ("PUT", "PATCH"):
        r = api.request(method, f"/services/{name}", json=[1, 2])
        assert r.status_code == 400 and r.json()["fields"] == {"@entity": ["expected a record"]}
    assert api.get(f"/services/{name}").json()["host"] == "a.test"


@pytest.mark.parametrize("path", ["/services", "/routes", "/upstreams", "/targets", "/consumers", "/plugins",
                                  "/certificates", "/snis", "/ca_certificates", "/key-auths", "/basic-auths",
                                  "/jwts", "/acls"])
def test_unknown_field_is_named_for_every_entity(api, path):
    r = api.post(path, json={"no_such_field": 1})
    assert r.status_code == 400 and r.json()["fields"]["no_such_field"] == "unknown field"
    r = api.post(path, data={"no_such_field": "1"})
    assert r.status_code == 400 and r.json()["fields"]["no_such_field"] == "unknown field"


@pytest.mark.parametrize("path, body, field, reference", [
    ("/services", {"protocol": "https", "host": "a.test", "client_certificate": {"id": MISSING_ID}}, "client_certificate", "certificates"),
    ("/targets", {"target": "a.test", "upstream": {"id": MISSING_ID}}, "upstream", "upstreams"),
    ("/snis", {"name": "x.test", "certificate": {"id": MISSING_ID}}, "certificate", "certificates"),
    ("/plugins", {"name": "limits-for-test", "route": {"id": MISSING_ID}}, "route", "routes"),
    ("/plugins", {"name": "limits-for-test", "consumer": {"id": MISSING_ID}}, "consumer", "consumers"),
    ("/basic-auths", {"consumer": {"id": MISSING_ID}, "username": "x", "password": "y"}, "consumer", "consumers"),
    ("/jwts", {"consumer": {"id": MISSING_ID}}, "consumer", "consumers"),
    ("/acls", {"consumer": {"id": MISSING_ID}, "group": "g"}, "consumer", "consumers"),
])
def test_bad_references_for_every_entity(api, path, body, field, reference):
    r = api.post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json() == {"code": 4, "name": "foreign key violation", "fields": {field: {"id": MISSING_ID}},
                        "message": f"the foreign key '{{id=\"{MISSING_ID}\"}}' does not reference an existing '{reference}' entity."}


def test_reference_by_unknown_name(api):
    r = api.post("/routes", data={"paths": "/", "service.name": "no-such-service"})
    assert r.status_code == 400
    assert r.json()["message"] == "the foreign key '{name=\"no-such-service\"}' does not reference an existing 'services' entity."


def test_jwt_with_a_null_algorithm_is_hs256_not_a_server_error(api):
    name = "jwt-" + uuid.uuid4().hex[:6]
    api.post("/consumers", json={"username": name})
    r = api.put(f"/consumers/{name}/jwt/{name}-key", json={"algorithm": None})
    assert r.status_code == 200, r.text
    assert r.json()["algorithm"] == "HS256"  # Kong verifies a secret without algorithm as HS256
    r = api.post(f"/consumers/{name}/jwt", json={"algorithm": None, "rsa_public_key": None})
    assert r.status_code == 201 and r.json()["algorithm"] == "HS256"


@pytest.mark.parametrize("send", [{"json": {"tags": [None]}}, {"json": {"tags": ["a", None]}},
                                  {"content": b"tags[]=", "headers": {"content-type": "application/x-www-form-urlencoded"}}])
def test_a_null_inside_an_array_is_refused(api, send):
    name = "nul-" + uuid.uuid4().hex[:6]
    api.post("/consumers", json={"username": name})
    r = api.post(f"/consumers/{name}/key-auth", **send)
    assert r.status_code == 400, r.text
    assert "required field missing" in r.json()["fields"]["tags"]
    assert api.get(f"/consumers/{name}/key-auth").json()["data"] == []


@pytest.mark.parametrize("send", [
    {"content": b'{"name": "limits-for-test", "config": {"minute": 1e400}}', "headers": {"content-type": "application/json"}},
    {"content": b'{"name": "limits-for-test", "config": {"minute": NaN}}', "headers": {"content-type": "application/json"}},
    {"data": {"name": "limits-for-test", "config.minute": "inf"}},
    {"content": b'{"host": "a.test", "retries": -Infinity}', "headers": {"content-type": "application/json"}},
])
def test_infinite_numbers_are_400_naming_the_field(api, send):
    # stored, an infinity would stop every later configuration from compiling on the workers
    r = api.post("/services" if b"host" in send.get("content", b"") else "/plugins", **send)
    assert r.status_code == 400, r.text
    fields = r.json()["fields"]
    if "retries" in fields:
        assert fields == {"retries": "expected a finite number"}
    else:
        assert list(fields) == ["config"] and list(fields["config"]) == ["minute"]


def test_a_null_header_value_of_a_route_is_refused(api):
    # accepted, it made every later configuration fail to compile on the workers
    r = api.post("/routes", json={"paths": ["/h"], "headers": {"x-a": None}})
    assert r.status_code == 400, r.text
    assert r.json()["fields"] == {"headers": {"x-a": "required field missing"}}


@pytest.mark.parametrize("body, where, message", [
    ({"name": "rate-limiting", "config": {"minute": 5, "policy": "redis"}}, "@entity",
     "redis.host is required when policy is 'redis'"),
    ({"name": "rate-limiting", "config": {}}, "@entity", "at least one of these fields must be non-empty: "
     "'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'"),
    ({"name": "acl", "config": {}}, "@entity",
     "exactly one of these fields must be non-empty: 'config.allow', 'config.deny'"),
    ({"name": "ip-restriction", "config": {"allow": ["10.0.0.300"]}}, "allow", "invalid ip or cidr range: '10.0.0.300'"),
])
def test_plugin_validator_messages_are_kongs_words(api, body, where, message):
    """A plugin validator's message reaches the client as written, without pydantic's "Value error, "."""
    r = api.post("/plugins", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["fields"]["config"][where] == message
    assert "Value error" not in r.text
