"""response-ratelimiting: Kong's defaults, 400s naming the field, X-Kong-Limit parsing, and the
local policy's counts (costs counted in the node's shared counters, a used-up limit answered 429)."""
from __future__ import annotations

import pytest
from ctx_for_test import CtxForTest, make_plugin_for_test

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled.response_ratelimiting import PLUGIN as ResponseRateLimiting


def test_defaults_are_kongs():
    conf = validate_plugin_config("response-ratelimiting", {"limits": {"videos": {"minute": 10}}})
    assert (conf["header_name"], conf["limit_by"], conf["policy"]) == ("x-kong-limit", "consumer", "local")
    assert conf["fault_tolerant"] and not conf["block_on_first_violation"] and not conf["hide_client_headers"]
    assert conf["limits"] == {"videos": {"second": None, "minute": 10, "hour": None, "day": None,
                                         "month": None, "year": None}}


@pytest.mark.parametrize("config, needle", [
    ({}, "limits"), ({"limits": {}}, "limits"), ({"limits": {"v": {}}}, "at least one of these fields"),
    ({"limits": {"v": {"minute": 10, "hour": 5}}}, "cannot be lower than the limit for minute"),
    ({"limits": {"v": {"minute": 0}}}, "greater than 0"),
    ({"limits": {"v": {"minute": 1}}, "policy": "redis"}, "redis.host"),
    ({"limits": {"v": {"minute": 1}}, "limit_by": "header"}, "limit_by"),
    ({"limits": {"v": {"minute": 1}}, "redis_host": "a", "redis": {"host": "b"}}, "redis_host"),
])
def test_bad_config_names_the_field(config, needle):
    with pytest.raises(PluginConfigError) as err:
        validate_plugin_config("response-ratelimiting", config)
    assert needle in str(err.value.fields["config"])


def test_x_kong_limit_parsing_follows_kong():
    plugin = make_plugin_for_test(ResponseRateLimiting, {"limits": {"videos": {"minute": 9}, "images": {"minute": 9}}})
    assert plugin.parse(["videos=2, images = 3"]) == {"videos": 2, "images": 3}
    assert plugin.parse(["videos=2=3, other=1, images=x"]) == {}
    assert plugin.parse(["videos=" + "9" * 40]) == {"videos": 1 << 40}  # clamped: counters are int64
    assert plugin.parse(["videos=1", "images=4"]) == {"videos": 1, "images": 4}


def _through(plugin, cost: str | None):
    ctx = CtxForTest(route={"id": "r"}, service={"id": "s"}, client_ip="10.0.0.9")
    plugin.access(ctx)
    if ctx.exited is not None:
        return ctx.exited[0], ctx
    if cost:
        ctx.response_headers.set("X-Kong-Limit", cost)
    ctx.response_status = 200
    plugin.response(ctx)
    if ctx.exited is None:
        plugin.log(ctx)
    return (ctx.exited or (200,))[0], ctx


def test_local_policy_counts_costs_and_refuses_past_the_limit():
    plugin = make_plugin_for_test(ResponseRateLimiting, {"limits": {"videos": {"minute": 3}}})
    status, ctx = _through(plugin, "videos=2")
    assert status == 200 and ctx.response_headers.get("X-RateLimit-Remaining-videos-minute") == "1"
    assert ctx.response_headers.get("X-Kong-Limit") is None
    assert _through(plugin, "videos=1")[1].response_headers.get("X-RateLimit-Remaining-videos-minute") == "0"
    assert _through(plugin, "videos=1")[0] == 429
    assert _through(plugin, None)[0] == 200  # costs nothing: still passes


def test_a_huge_cost_from_the_upstream_still_counts_in_shared_memory(tmp_path):
    from meshway.plugins import _shm

    _shm.attach_shared_memory(tmp_path, 0, 1)
    try:
        plugin = make_plugin_for_test(ResponseRateLimiting, {"limits": {"videos": {"minute": 3}}})
        assert _through(plugin, "videos=" + "9" * 30)[0] == 200
        assert _through(plugin, "videos=1")[0] == 429
    finally:
        _shm._layout = None  # back to in-process tables for the other tests
        _shm._tables.clear()
