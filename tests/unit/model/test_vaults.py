"""Kong's `vaults` entity and `{vault://...}` references: parsing, the env vault, where they may be."""
from __future__ import annotations

import pytest

from meshway.model import ENTITIES, DeclarativeError, SchemaViolation, parse_declarative, resolve_snapshot
from meshway.model._vaults import REFERENCEABLE, VaultReferenceError, parse_reference, resolve_reference
from meshway.proxy._runtime import SECRET_COLLECTIONS

ENV = {"API_KEY": "s3cret", "APP_REDIS_PASS": "pw", "CREDS": '{"user": "alice", "port": 6380}',
       "ROTATED_PREVIOUS": "old"}


def test_reference_parts():
    assert parse_reference("{vault://env/my-key/field?prefix=APP_#2}") == {
        "name": "env", "resource": "my-key", "key": "field", "config": {"prefix": "APP_"}, "version": 2}
    with pytest.raises(VaultReferenceError, match="empty path"):
        parse_reference("{vault://env/}")


@pytest.mark.parametrize("reference, value", [
    ("{vault://env/api-key}", "s3cret"),  # upper-cased, `-` as `_`
    ("{vault://env/redis-pass?prefix=app_}", "pw"),  # a prefix given in the reference
    ("{vault://app-env/redis-pass}", "pw"),  # a vaults entity's prefix, with its config.prefix
    ("{vault://env/creds/user}", "alice"),  # a key of a JSON value
    ("{vault://env/creds/port}", "6380"),
    ("{vault://env/rotated#2}", "old"),  # the previous version
])
def test_env_vault_values(reference, value):
    vaults = {"app-env": {"prefix": "app-env", "name": "env", "config": {"prefix": "APP_"}}}
    assert resolve_reference(reference, vaults, ENV) == value


@pytest.mark.parametrize("reference, message", [
    ("{vault://env/nothing}", "environment variable NOTHING is not set"),
    ("{vault://hcv/x}", "vault not found (hcv)"),
    ("{vault://env/creds/missing}", "has no JSON key 'missing'"),
])
def test_unresolvable_references_say_why(reference, message):
    with pytest.raises(VaultReferenceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_reference(reference, {}, ENV)


@pytest.mark.parametrize("data, field, message", [
    ({"prefix": "env", "name": "env"}, "prefix", "must not be one of: env"),
    ({"prefix": "Bad_Prefix", "name": "env"}, "prefix", "invalid value: Bad_Prefix"),
    ({"prefix": "hc", "name": "hcv"}, "name", "vault 'hcv' is not installed"),
    ({"prefix": "e2", "name": "env", "config": {"prefix": "A", "ttl": 5}}, "config", {"ttl": "unknown field"}),
])
def test_vault_entity_rules(data, field, message):
    with pytest.raises(SchemaViolation) as e:
        ENTITIES["vaults"].validate(data)
    assert e.value.fields[field] == message


def _doc(key: str, password: str) -> dict:
    return {"_format_version": "3.0",
            "vaults": [{"prefix": "app-env", "name": "env", "config": {"prefix": "APP_"}, "_comment": "Kong's"}],
            "consumers": [{"username": "u", "keyauth_credentials": [{"key": key}]}],
            "plugins": [{"name": "rate-limiting", "config": {"minute": 5, "policy": "redis",
                                                             "redis": {"host": "r.test", "password": password}}}]}


def test_declarative_references_are_kept_and_resolved_at_compile(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    snap = parse_declarative(_doc("{vault://env/api-key}", "{vault://app-env/redis-pass}"))
    assert snap["keyauth_credentials"][0]["key"] == "{vault://env/api-key}"  # stored and exported as written
    resolved = resolve_snapshot(snap)
    assert resolved["keyauth_credentials"][0]["key"] == "s3cret"
    assert resolved["plugins"][0]["config"]["redis"]["password"] == "pw"
    assert snap["plugins"][0]["config"]["redis"]["password"] == "{vault://app-env/redis-pass}"  # not mutated
    assert resolve_snapshot(parse_declarative({"_format_version": "3.0"})) is not None


def test_declarative_unresolvable_reference_names_the_field(monkeypatch):
    monkeypatch.delenv("NOTHING", raising=False)
    with pytest.raises(DeclarativeError) as e:
        parse_declarative(_doc("{vault://env/nothing}", "{vault://other/x}"))
    assert e.value.fields == {
        "consumers[0].keyauth_credentials[0].key": "could not resolve {vault://env/nothing}: environment variable NOTHING is not set",
        "plugins[0].config.redis.password": "vault not found (other) [{vault://other/x}]"}


def test_a_reference_that_stops_resolving_is_unset_and_reported():
    snap = {"keyauth_credentials": [{"id": "k1", "key": "{vault://env/gone}"}], "vaults": [], "plugins": []}
    seen = []
    out = resolve_snapshot(snap, environ={}, on_error=lambda *a: seen.append(a))
    assert out["keyauth_credentials"][0]["key"] is None and seen[0][:2] == ("keyauth_credentials", "k1")


def test_text_in_a_field_kong_does_not_mark_referenceable_is_plain_text():
    snap = parse_declarative({"_format_version": "3.0", "consumers": [{"username": "{vault://env/x}"}]})
    assert resolve_snapshot(snap)["consumers"][0]["username"] == "{vault://env/x}"


def test_the_proxy_looks_for_references_where_the_model_allows_them():
    assert set(SECRET_COLLECTIONS) == {*REFERENCEABLE, "plugins"}


def test_certificate_references_are_checked_with_their_pem(monkeypatch):
    from tests.fixtures.certs import cert_pair_for_test

    cert, key = cert_pair_for_test("a.test")
    other_cert, _ = cert_pair_for_test("b.test")
    monkeypatch.setenv("TLS_CERT", cert)
    monkeypatch.setenv("TLS_KEY", key)
    monkeypatch.setenv("OTHER_CERT", other_cert)
    monkeypatch.setenv("NOT_PEM", "hello")
    doc = {"_format_version": "3.0", "certificates": [
        {"cert": "{vault://env/tls-cert}", "key": "{vault://env/tls-key}", "snis": ["a.test"]}]}
    snap = parse_declarative(doc)
    assert snap["certificates"][0]["cert"] == "{vault://env/tls-cert}"
    assert resolve_snapshot(snap)["certificates"][0]["cert"] == cert
    doc["certificates"][0]["cert"] = "{vault://env/other-cert}"
    with pytest.raises(DeclarativeError) as e:
        parse_declarative(doc)
    assert e.value.fields == {"certificates[0]": "certificate does not match key"}
    doc["certificates"][0]["cert"] = "{vault://env/not-pem}"
    with pytest.raises(DeclarativeError) as e:
        parse_declarative(doc)
    assert e.value.fields["certificates[0].cert"].startswith("invalid certificate")
    gone = resolve_snapshot({**snap, "certificates": [{**snap["certificates"][0], "key": "{vault://env/gone}"}]},
                            environ={})
    assert gone["certificates"] == []  # left out whole: its SNIs get the default certificate
