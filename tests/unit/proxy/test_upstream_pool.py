"""The upstream keep-alive pool: newest idle connection first, at most `upstream_keepalive_pool_size`
idle per peer (the oldest is closed to make room, as nginx's keepalive cache), a connection closed
while idle (by either side) leaves it, and one idle past `upstream_keepalive_idle_timeout` is
closed instead of reused."""
from __future__ import annotations

import asyncio

import pytest

from meshway.proxy._upstream import Pool, UpstreamConn

KEY = ("127.0.0.1", 9, None)


class Transport:
    def __init__(self) -> None:
        self.closed = False
        self.reading = True

    def close(self) -> None:
        self.closed = True

    abort = close

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name, default=None):
        return default


@pytest.fixture
def pool():
    loop = asyncio.new_event_loop()
    p = Pool(loop, size=3, max_requests=100, idle_timeout=60.0)
    yield p
    p.close()
    loop.close()


def _conn(pool: Pool, key: tuple = KEY) -> UpstreamConn:
    conn = UpstreamConn(pool, key)
    conn.connection_made(Transport())
    conn.requests = 1
    return conn


def test_the_newest_idle_connection_is_taken_first(pool):
    a, b = _conn(pool), _conn(pool)
    pool.put(a, now=10.0)
    pool.put(b, now=11.0)
    assert pool.take(KEY, now=12.0) is b
    assert pool.take(KEY, now=12.0) is a
    assert pool.take(KEY, now=12.0) is None
    assert not a.closed and not b.closed


def test_a_full_pool_closes_its_oldest_idle_connection(pool):
    conns = [_conn(pool) for _ in range(5)]
    for i, c in enumerate(conns):
        pool.put(c, now=float(i))
    assert [c.closed for c in conns] == [True, True, False, False, False]
    assert pool.stats()["idle"] == 3
    assert [pool.take(KEY, now=5.0) for _ in range(4)] == [conns[4], conns[3], conns[2], None]


def test_a_connection_closed_while_idle_leaves_the_pool(pool):
    a, b, c = _conn(pool), _conn(pool), _conn(pool)
    for conn in (a, b, c):
        pool.put(conn, now=1.0)
    b.connection_lost(None)  # the upstream closed it
    a.close()  # we did
    assert pool.stats()["idle"] == 1
    assert pool.take(KEY, now=2.0) is c
    assert pool.take(KEY, now=2.0) is None
    d = _conn(pool)
    pool.put(d, now=3.0)  # room again, and nothing else is closed for it
    assert not c.closed and pool.take(KEY, now=3.0) is d


def test_an_idle_connection_past_its_idle_timeout_is_closed_not_reused(pool):
    old, new = _conn(pool), _conn(pool)
    pool.put(old, now=0.0)
    pool.put(new, now=50.0)
    assert pool.take(KEY, now=70.0) is new  # 20 s idle
    assert pool.take(KEY, now=70.0) is None  # 70 s idle: closed
    assert old.closed and old.transport.closed


def test_pools_are_per_peer(pool):
    here, there = _conn(pool, KEY), _conn(pool, ("127.0.0.1", 10, None))
    pool.put(here, now=1.0)
    pool.put(there, now=1.0)
    assert pool.take(("127.0.0.1", 10, None), now=2.0) is there
    assert pool.take(("127.0.0.1", 10, None), now=2.0) is None
    assert pool.take(KEY, now=2.0) is here


def test_a_connection_past_max_requests_or_with_a_zero_size_pool_is_closed(pool):
    spent = _conn(pool)
    spent.requests = 100
    pool.put(spent, now=1.0)
    assert spent.closed and pool.take(KEY, now=1.0) is None
    none = Pool(pool.loop, size=0, max_requests=100, idle_timeout=60.0)
    conn = _conn(none)
    none.put(conn, now=1.0)
    assert conn.closed and none.take(KEY, now=1.0) is None
    none.close()
