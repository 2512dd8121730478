"""rate-limiting with policy redis against a real redis-server: shared limits, fault tolerance."""
from __future__ import annotations

import asyncio

import redis
from ctx_for_test import CtxForTest, make_plugin_for_test

from meshway.plugins.bundled.rate_limiting import PLUGIN as RateLimiting


def config(port, **kw):
    return {"minute": 3, "policy": "redis", "redis_host": "127.0.0.1", "redis_port": port, "redis_timeout": 500, **kw}


async def hit(plugin, ip="10.0.0.1"):
    ctx = CtxForTest(route={"id": "r"}, service={"id": "s"}, client_ip=ip)
    await plugin.access(ctx)
    if ctx.exited is None:
        return 200, dict(ctx.response_headers.items)
    return ctx.exited[0], ctx.exited[2]


def test_two_nodes_share_one_limit(redis_server):
    async def scenario():
        node_a = make_plugin_for_test(RateLimiting, config(redis_server))
        node_b = make_plugin_for_test(RateLimiting, config(redis_server))
        return [await hit(n) for n in (node_a, node_b, node_a, node_b)]

    results = asyncio.run(scenario())
    assert [s for s, _ in results] == [200, 200, 200, 429]
    assert [h["X-RateLimit-Remaining-Minute"] for _, h in results] == ["2", "1", "0", "0"]
    assert int(results[3][1]["Retry-After"]) >= 1


def test_counters_live_in_redis_with_expiry(redis_server):
    asyncio.run(hit(make_plugin_for_test(RateLimiting, config(redis_server, second=1))))
    client = redis.Redis(port=redis_server)
    keys = sorted(k.decode() for k in client.keys("ratelimit:*"))
    assert len(keys) == 2 and keys[0].endswith(":minute") and keys[1].endswith(":second")
    assert ":10.0.0.1:" in keys[0]
    assert 0 < client.ttl(keys[0]) <= 60 and 0 < client.ttl(keys[1]) <= 1


def test_identifiers_are_separate(redis_server):
    async def scenario():
        p = make_plugin_for_test(RateLimiting, config(redis_server, minute=1))
        return [(await hit(p, ip))[0] for ip in ("1.1.1.1", "2.2.2.2", "1.1.1.1")]

    assert asyncio.run(scenario()) == [200, 200, 429]


def test_redis_down_fault_tolerant_lets_requests_through():
    async def scenario(tolerant):
        p = make_plugin_for_test(RateLimiting, config(1, fault_tolerant=tolerant))  # nothing listens on port 1
        return await hit(p)

    assert asyncio.run(scenario(True)) == (200, {})
    status, _ = asyncio.run(scenario(False))
    assert status == 500
