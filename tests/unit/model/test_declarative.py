"""Declarative config: nesting, references by name, deterministic ids, every error by path, export."""
import json

import pytest

from meshway.model import DeclarativeError, ENTITIES, parse_declarative, snapshot_hash, to_declarative

DOC = """
_format_version: "3.0"
services:
- name: my-svc
  url: http://httpbin.test:8080/anything
  routes:
  - name: r1
    paths: [/r1]
    plugins:
    - name: limits-for-test
      config: {minute: 5}
  plugins:
  - name: limits-for-test
routes:
- name: r2
  hosts: [a.test]
  service: my-svc
upstreams:
- name: backend
  targets:
  - target: 10.0.0.1:80
  - target: 10.0.0.2
consumers:
- username: alice
  keyauth_credentials:
  - key: alice-key
  basicauth_credentials:
  - username: alice
    password: pw
  acls:
  - group: admins
  jwt_secrets:
  - key: alice-iss
  plugins:
  - name: limits-for-test
    config: {minute: 1}
"""


@pytest.fixture(autouse=True)
def _plugins(plugin_for_test):
    return plugin_for_test


def errors_of(doc):
    with pytest.raises(DeclarativeError) as e:
        parse_declarative(doc)
    return e.value.errors


def test_nested_document_flattens_with_references_set():
    snap = parse_declarative(DOC)
    assert set(snap) == {"_format_version", *ENTITIES}
    svc = snap["services"][0]
    assert (svc["host"], svc["port"], svc["path"]) == ("httpbin.test", 8080, "/anything")
    routes = {r["name"]: r for r in snap["routes"]}
    assert routes["r1"]["service"] == routes["r2"]["service"] == {"id": svc["id"]}
    by_scope = {(p["service"] and "service", p["route"] and "route", p["consumer"] and "consumer"): p
                for p in snap["plugins"]}
    assert by_scope[(None, "route", None)]["route"] == {"id": routes["r1"]["id"]}
    assert by_scope[("service", None, None)]["config"] == {"minute": None, "policy": "local", "allow": None}
    assert by_scope[(None, None, "consumer")]["config"]["minute"] == 1
    assert sorted(t["target"] for t in snap["targets"]) == ["10.0.0.1:80", "10.0.0.2:8000"]
    consumer_ref = {"id": snap["consumers"][0]["id"]}
    for name in ("keyauth_credentials", "basicauth_credentials", "acls", "jwt_secrets"):
        assert [c["consumer"] for c in snap[name]] == [consumer_ref]


def test_same_file_gives_same_ids_and_hash():
    first, second = parse_declarative(DOC), parse_declarative(DOC)
    assert snapshot_hash(first) == snapshot_hash(second)
    assert [s["id"] for s in first["routes"]] == [s["id"] for s in second["routes"]]
    assert first["jwt_secrets"][0]["secret"] == second["jwt_secrets"][0]["secret"]


def test_hash_changes_with_content_not_timestamps():
    snap = parse_declarative(DOC)
    touched = json.loads(json.dumps(snap))
    touched["services"][0]["updated_at"] += 100
    assert snapshot_hash(touched) == snapshot_hash(snap)
    touched["services"][0]["retries"] = 1
    assert snapshot_hash(touched) != snapshot_hash(snap)


def test_given_ids_are_kept_and_references_by_id_work():
    sid = "0f9c9a1e-6b8a-4c55-8f4e-0a1b2c3d4e5f"
    snap = parse_declarative({"_format_version": "2.1", "services": [{"id": sid, "host": "a.test"}],
                              "routes": [{"paths": ["/"], "service": sid}, {"paths": ["/x"], "service": {"id": sid}}]})
    assert snap["services"][0]["id"] == sid and all(r["service"] == {"id": sid} for r in snap["routes"])


def test_all_errors_are_reported_by_path():
    errors = errors_of("""
_format_version: "3.0"
services:
- name: ok
  host: a.test
- name: bad-port
  host: a.test
  port: 99999
- name: third
  host: a.test
  routes:
  - paths: [/ok, nope]
  - protocols: [tcp]
routes:
- paths: [/]
  service: missing-svc
""")
    assert errors == {
        "services[1].port": "value should be between 0 and 65535",
        "services[2].routes[0].paths[1]": "should start with: / (fixed path) or ~/ (regex path)",
        "services[2].routes[1]": "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'",
        "routes[0].service": "invalid reference 'service: missing-svc' (no such entry in 'services')",
    }


def test_duplicate_names_are_reported():
    errors = errors_of({"_format_version": "3.0", "services": [{"name": "a", "host": "x.test"}, {"name": "a", "host": "y.test"}]})
    assert errors == {"services[1]": "uniqueness violation: 'services' entity with name set to 'a' already declared"}


def test_duplicate_targets_in_one_upstream_are_reported():
    errors = errors_of({"_format_version": "3.0", "upstreams": [
        {"name": "u", "targets": [{"target": "a.test:80", "weight": 1}, {"target": "a.test:80", "weight": 2}]}]})
    assert list(errors) == ["upstreams[0].targets[1]"]
    assert errors["upstreams[0].targets[1]"].startswith("uniqueness violation: 'targets' entity with upstream, target")


@pytest.mark.parametrize("doc, path, message", [
    ({}, "_format_version", "required field missing"),
    ({"_format_version": "9.9"}, "_format_version", "expected one of: 1.1, 2.1, 3.0"),
    ({"_format_version": "3.0", "servicez": []}, "servicez", "unknown field"),
    ({"_format_version": "3.0", "services": {"a": 1}}, "services", "expected an array"),
    ({"_format_version": "3.0", "services": ["x"]}, "services[0]", "expected a record"),
    ("services: [", "@document", None),
])
def test_document_level_errors(doc, path, message):
    errors = errors_of(doc)
    assert path in errors
    if message:
        assert errors[path] == message


def test_export_round_trips_without_loss():
    snap = parse_declarative(DOC)
    again = parse_declarative(to_declarative(snap))
    assert snapshot_hash(again) == snapshot_hash(snap)
    assert again["basicauth_credentials"][0]["password"] == snap["basicauth_credentials"][0]["password"]


def test_export_shape_is_flat_with_bare_ids():
    doc = to_declarative(parse_declarative(DOC))
    assert doc["_format_version"] == "3.0" and doc["_transform"] is False
    route = doc["routes"][0]
    assert isinstance(route["service"], str) and "created_at" not in route
    assert "path" not in doc["services"][0] or doc["services"][0]["path"] == "/anything"


def test_certificate_snis_nest_as_objects_or_names():
    from tests.fixtures.certs import cert_pair_for_test

    cert, key = cert_pair_for_test()
    snap = parse_declarative({"_format_version": "3.0", "certificates": [
        {"cert": cert, "key": key, "snis": ["a.test", {"name": "b.test"}]}]})
    cid = snap["certificates"][0]["id"]
    assert sorted((s["name"], s["certificate"]["id"]) for s in snap["snis"]) == [("a.test", cid), ("b.test", cid)]
