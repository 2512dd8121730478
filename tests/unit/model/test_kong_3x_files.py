"""Declarative files as Kong 3.x takes them: real files from public projects, and each rule they need.

The files under tests/data/declarative/ are kept as published (each names its source).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from meshway.model import ENTITIES, DeclarativeError, SchemaViolation, parse_declarative

DATA = Path(__file__).resolve().parents[2] / "data" / "declarative"


def _by_name(snapshot: dict, collection: str) -> dict:
    return {e.get("name") or e.get("username"): e for e in snapshot[collection]}


def _errors(doc: dict) -> dict:
    with pytest.raises(DeclarativeError) as e:
        parse_declarative(doc)
    return e.value.fields


def test_supabase_kong_yml_parses_with_comments_url_and_ws():
    snap = parse_declarative((DATA / "supabase-kong.yml").read_text())
    services = _by_name(snap, "services")
    assert len(services) == 15 and len(snap["routes"]) == 15 and len(snap["plugins"]) == 27
    assert "_comment" not in services["rest-v1"]  # Kong's per-entity comment is dropped, not stored
    # `url` wins over `protocol: ws` beside it, as in Kong (its shorthand overwrites the fields).
    realtime = services["realtime-v1-ws"]
    assert (realtime["protocol"], realtime["host"], realtime["port"], realtime["path"]) == (
        "http", "realtime-dev.supabase-realtime", 4000, "/socket")


def test_deck_dump_of_kong_3_10_rate_limiting_with_redis_record_and_flat_fields():
    snap = parse_declarative((DATA / "deck-dump-3.10-rate-limiting.yaml").read_text())
    config = snap["plugins"][0]["config"]
    assert config["minute"] == 10 and isinstance(config["minute"], int)
    assert config["redis"]["port"] == 6000 and config["redis"]["timeout"] == 2000
    assert "redis_port" not in config  # the deprecated fields feed the record; only it is stored


def test_deck_dump_of_kong_3_8_parses_with_its_hmac_auth_credentials():
    doc = yaml.safe_load((DATA / "deck-dump-3.8.1-entities.yaml").read_text())
    snap = parse_declarative(doc)
    (hmac_cred,) = snap["hmacauth_credentials"]
    assert (hmac_cred["username"], hmac_cred["secret"]) == ("hmac-user", "yeNZBeqCuk0D3H85VX77Umacf91MwqRo")
    assert hmac_cred["consumer"]["id"] == snap["consumers"][0]["id"]
    prometheus = _by_name(snap, "plugins")["prometheus"]["config"]
    assert prometheus["ai_metrics"] is False and prometheus["upstream_health_metrics"] is False
    assert len(snap["targets"]) == 3 and len(snap["snis"]) == 3


def test_comment_and_ignore_on_any_entity_are_dropped_other_underscore_keys_are_not():
    doc = {"_format_version": "3.0", "_comment": "file", "_ignore": [],
           "services": [{"name": "s", "url": "http://a.test", "_comment": "svc", "_ignore": [{"x": 1}],
                         "routes": [{"paths": ["/"], "_comment": "nested route"}]}],
           "consumers": [{"username": "u", "_comment": "c", "acls": [{"group": "g", "_comment": "acl"}]}]}
    snap = parse_declarative(doc)
    assert not any(k.startswith("_") for c in ("services", "routes", "consumers", "acls") for e in snap[c] for k in e)
    assert _errors({"_format_version": "3.0", "services": [{"url": "http://a.test", "_comment": 5, "_x": 1}]}) == {
        "services[0]._comment": "expected a string", "services[0]._x": "unknown field"}


def test_url_overrides_protocol_host_port_and_path_given_beside_it():
    svc = ENTITIES["services"].validate({"url": "https://a.test", "protocol": "http", "host": "b.test",
                                         "port": 1, "path": "/old"})
    assert (svc["protocol"], svc["host"], svc["port"], svc["path"]) == ("https", "a.test", 443, None)


def test_ws_and_wss_services_and_routes():
    assert ENTITIES["services"].validate({"protocol": "wss", "host": "a.test"})["port"] == 443
    assert ENTITIES["services"].validate({"url": "ws://a.test/socket"})["protocol"] == "ws"
    route = ENTITIES["routes"].validate({"protocols": ["ws", "wss"], "paths": ["/ws"]})
    assert route["protocols"] == ["ws", "wss"]
    with pytest.raises(SchemaViolation) as e:
        ENTITIES["routes"].validate({"protocols": ["ws", "http"], "paths": ["/ws"]})
    assert "('ws', 'wss')" in e.value.fields["protocols"]
    with pytest.raises(SchemaViolation) as e:
        ENTITIES["routes"].validate({"protocols": ["ws"]})
    assert e.value.fields == {"@entity": ["must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'ws'"]}


@pytest.mark.parametrize("plugin", ["key-auth", "basic-auth", "jwt", "acl", "cors"])
def test_plugins_kong_refuses_on_a_consumer_are_refused(plugin):
    config = {"allow": ["g"]} if plugin == "acl" else {}
    doc = {"_format_version": "3.0", "consumers": [{"username": "u", "plugins": [{"name": plugin, "config": config}]}]}
    assert _errors(doc) == {"consumers[0].plugins[0].consumer": "value must be null"}


def test_a_consumer_plugin_kong_allows_is_kept():
    doc = {"_format_version": "3.0",
           "consumers": [{"username": "u", "plugins": [{"name": "rate-limiting", "config": {"minute": 5}}]}]}
    plugin = parse_declarative(doc)["plugins"][0]
    assert plugin["consumer"] is not None and plugin["config"]["minute"] == 5


def _uncommented(text: str) -> str:
    """Kong's example with its examples switched on, as its comments invite: `# ` dropped from
    every line that is YAML (a key, a list item or an indented line)."""
    return "\n".join(line[2:] if re.match(r"^# ( |- |[a-z_]+:)", line) else line for line in text.splitlines())


def test_kong_config_init_example_parses_as_is_and_with_its_examples_on():
    text = (DATA / "kong-config-init.yml").read_text()
    assert parse_declarative(text)["services"] == []
    snap = parse_declarative(_uncommented(text))
    assert set(_by_name(snap, "services")) == {"example-service", "another-service"}
    assert _by_name(snap, "routes")["another-route"]["hosts"] == ["hello.com"]
    limits = sorted((p["config"]["hour"], p["config"]["second"], p["service"] is not None)
                    for p in snap["plugins"] if p["name"] == "rate-limiting")
    assert limits == [(2, None, True), (10000, 5, False)]  # whole numbers, as Kong writes them
    assert all(p["consumer"] is not None for p in snap["plugins"] if p["name"] == "rate-limiting")
