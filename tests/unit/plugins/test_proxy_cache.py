"""proxy-cache: config defaults and 400s, Kong's cache key pieces, and the node-wide store's bounds."""
from __future__ import annotations

import pytest

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled._cache_store import CacheStore
from meshway.plugins.bundled.proxy_cache import _vary_key, parse_directive_header, parse_query, resource_ttl


def test_defaults_are_kongs():
    conf = validate_plugin_config("proxy-cache", {"strategy": "memory"})
    assert conf["response_code"] == [200, 301, 404] and conf["request_method"] == ["GET", "HEAD"]
    assert conf["content_type"] == ["text/plain", "application/json"] and conf["cache_ttl"] == 300
    assert conf["memory"] == {"dictionary_name": "kong_db_cache"} and conf["storage_ttl"] is None
    assert conf["response_headers"] == {"age": True, "X-Cache-Status": True, "X-Cache-Key": True}


@pytest.mark.parametrize("config, field", [
    ({}, "strategy"), ({"strategy": "redis"}, "strategy"), ({"strategy": "memory", "cache_ttl": 0}, "cache_ttl"),
    ({"strategy": "memory", "response_code": []}, "response_code"),
    ({"strategy": "memory", "response_code": [901]}, "response_code"),
    ({"strategy": "memory", "request_method": ["DELETE"]}, "request_method"),
    ({"strategy": "memory", "memory": {"dictionary_name": "proxy_cache"}}, "memory"),
    ({"strategy": "memory", "colour": 1}, "colour"),
])
def test_bad_config_names_the_field(config, field):
    with pytest.raises(PluginConfigError) as err:
        validate_plugin_config("proxy-cache", config)
    assert field in err.value.fields["config"]


def test_key_pieces_follow_kong():
    args = parse_query("b=2&a=1&flag&a=0&e=")
    assert args == {"b": "2", "a": ["1", "0"], "flag": True, "e": ""}
    assert _vary_key(args, sorted(args)) == "a=0,1:b=2:e=:flag"
    assert _vary_key(args, ["b", "missing"]) == "b=2"
    cc = parse_directive_header('Public, Max-Age=60, no-cache, x="y"')
    assert cc == {"public": True, "max-age": 60, "no-cache": True, "x": "y"}
    assert resource_ttl({"s-maxage": 10, "max-age": 60}, None) == 10
    assert resource_ttl({}, "Thu, 01 Jan 1970 00:00:00 GMT") == 0 and resource_ttl({}, "garbage") == 0


def test_store_stays_within_its_dictionary_size(tmp_path):
    store = CacheStore(tmp_path / "cache" / "d.sqlite", limit=10_000)
    meta = {"status": 200, "headers": {}}
    for i in range(40):
        assert store.store(f"k{i}", meta, b"x" * 1000, ttl=60, now=1000 + i)
        assert store.used() <= 10_000
    assert store.fetch("k0", 1050) is None  # the oldest went first (it had not expired yet)
    assert store.fetch("k39", 1050) == (meta, b"x" * 1000)
    assert not store.store("huge", meta, b"x" * 10_001, ttl=60, now=1100)  # larger than the dictionary
    assert store.fetch("k39", 2000) is None  # expired
    other = CacheStore(tmp_path / "cache" / "d.sqlite", limit=10_000)  # another worker's connection
    assert other.fetch("k39", 1050) == (meta, b"x" * 1000)
    assert other.purge("k39") and store.fetch("k39", 1050) is None
    store.flush()
    assert other.used() == 0
