"""Plugin configs as Kong 3.6+ writes them: rate-limiting's `redis` record, prometheus's newer
flags, and whole numbers echoed as integers."""
from __future__ import annotations

import json

import pytest

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled import _ratelimit


def _config(**kw):
    return validate_plugin_config("rate-limiting", {"minute": 5, **kw})


def test_whole_numbers_come_back_as_integers():
    config = validate_plugin_config("rate-limiting", {"minute": 5.0, "hour": 100, "second": 0.5})
    assert json.dumps([config["minute"], config["hour"], config["second"], config["error_code"],
                       config["sync_rate"], config["redis"]["timeout"]]) == "[5, 100, 0.5, 429, -1, 2000]"


def test_redis_record_is_taken_and_drives_the_client():
    config = _config(policy="redis", redis={"host": "r.test", "port": 6380, "database": 2, "password": "pw",
                                            "timeout": 500, "ssl": True, "ssl_verify": True})
    assert config["redis"]["host"] == "r.test" and config["redis"]["port"] == 6380
    from meshway.plugins.bundled.rate_limiting import RateLimitingConfig

    options = _ratelimit.redis_options(RateLimitingConfig.model_validate(config).redis)
    assert (options["host"], options["port"], options["db"], options["password"]) == ("r.test", 6380, 2, "pw")
    assert options["socket_timeout"] == 0.5 and options["ssl_cert_reqs"] == "required"


def test_flat_redis_fields_fill_the_record():
    config = _config(policy="redis", redis_host="r.test", redis_port=6390, redis_timeout=100, redis_database=1)
    assert {k: config["redis"][k] for k in ("host", "port", "timeout", "database")} == {
        "host": "r.test", "port": 6390, "timeout": 100, "database": 1}
    assert not any(k.startswith("redis_") for k in config)


def test_flat_and_record_agreeing_is_fine_disagreeing_names_both():
    assert _config(redis_host="a.test", redis={"host": "a.test"})["redis"]["host"] == "a.test"
    assert _config(redis_host=None, redis={"host": "a.test"})["redis"]["host"] == "a.test"  # deck writes nulls
    with pytest.raises(PluginConfigError) as e:
        _config(redis_host="a.test", redis={"host": "b.test"})
    assert "redis_host = a.test vs redis.host = b.test" in str(e.value.fields)


def test_policy_redis_needs_a_host():
    with pytest.raises(PluginConfigError) as e:
        _config(policy="redis")
    assert "redis.host is required" in str(e.value.fields)


def test_prometheus_takes_every_kong_36_flag():
    flags = ("per_consumer", "status_code_metrics", "latency_metrics", "bandwidth_metrics",
             "upstream_health_metrics", "ai_metrics", "wasm_metrics")
    config = validate_plugin_config("prometheus", {f: True for f in flags})
    assert all(config[f] is True for f in flags)


def test_whole_numbers_of_entity_fields_come_back_as_integers():
    from meshway.model import ENTITIES

    upstream = ENTITIES["upstreams"].validate({"name": "u", "healthchecks": {"active": {"timeout": 2.0},
                                                                             "threshold": 50.0}})
    assert json.dumps([upstream["healthchecks"]["active"]["timeout"], upstream["healthchecks"]["threshold"]]) == "[2, 50]"
