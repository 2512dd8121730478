"""The shared counters' `take_one` in C (`_core._counters.ShmCells`; `fast_take_one`, its step
without the method's frame, as rate-limiting calls it) against the Python loop it replaces, on random tables: the same counts returned, the same cells written, the same keys in
the overflow, for several workers' regions, probe chains, expired entries and full regions."""
from __future__ import annotations

import random

import pytest

from meshway.plugins import _shm

_counters = pytest.importorskip("meshway.proxy._core._counters", reason="the compiled core is not built")

T0 = 1_700_000_000


def tables(tmp_path, name: str, regions: int, slots: int) -> list[_shm.ShmCounters]:
    """One ShmCounters per worker region over one new file (as a node's workers have them)."""
    mm, regions, slots = _shm._map(tmp_path / f"{name}.{regions}", regions, slots)
    return [_shm.ShmCounters(name, mm, r, regions, slots) for r in range(regions)]


def fast_then_method(table: _shm.ShmCounters, h: int, limit: float, exp: int, now: float) -> int:
    """How rate-limiting takes a key per request: the C step, and the method when it says -1."""
    n = table.fast_take_one(h, limit, exp, now)
    return n if n >= 0 else table.take_one(h, limit, exp, now)


@pytest.mark.parametrize("via", ["take_one", "fast_take_one"])
@pytest.mark.parametrize("seed", range(12))
def test_take_one_in_c_matches_the_python_loop(tmp_path, seed, via):
    rnd = random.Random(seed)
    regions, slots = rnd.choice([(1, 16), (2, 16), (3, 32), (4, 16)])
    compiled = tables(tmp_path, "c", regions, slots)
    python = tables(tmp_path, "p", regions, slots)
    assert all(t.compiled is not None for t in compiled)
    for t in python:
        t.compiled = None  # the pure path (http1_impl = python)
    # Few hash values on few home slots: collisions, probe chains and full regions are common.
    keys = [rnd.randrange(1, 1 << 63) & ~(slots - 1) | rnd.randrange(4) for _ in range(rnd.choice([6, 24, 60]))]
    now = float(T0)
    for step in range(1500):
        now += rnd.choice([0, 0, 0, 0.3, 1, 7])
        worker = rnd.randrange(regions)
        h = rnd.choice(keys)
        limit = rnd.choice([1, 3, 10, 2.5, 10**9])
        exp = int(now) + rnd.choice([1, 2, 60])
        got = (compiled[worker].take_one(h, limit, exp, now) if via == "take_one"
               else fast_then_method(compiled[worker], h, limit, exp, now))
        want = python[worker].take_one(h, limit, exp, now)
        assert got == want, (seed, step)
        if step % 50 == 0 or got != want:
            assert compiled[0].cells.tolist() == python[0].cells.tolist(), (seed, step)
            for c, p in zip(compiled, python):
                assert c.overflow.counts == p.overflow.counts and c.full == p.full
    assert compiled[0].cells.tolist() == python[0].cells.tolist()
    assert [c.overflow.counts for c in compiled] == [p.overflow.counts for p in python]


def test_a_full_region_counts_the_key_in_this_workers_overflow(tmp_path):
    (table,) = tables(tmp_path, "full", 1, 16)
    assert table.compiled is not None
    keys = [(i << 4) | 1 for i in range(1, 18)]  # 17 keys with one home slot: one more than PROBES
    for h in keys:
        assert table.take_one(h, 5, T0 + 60, T0) == 0
    assert table.full and list(table.overflow.counts) == [keys[-1]]
    assert table.take_one(keys[-1], 5, T0 + 60, T0) == 1  # its overflow count is read back
    assert table.totals([keys[0], keys[-1]], T0) == [1, 2]
    assert table.fast_take_one(keys[0], 5, T0 + 60, T0) == -1  # keys in the overflow: the method's job
    assert fast_then_method(table, keys[0], 5, T0 + 60, T0) == 1
    assert table.totals([keys[0]], T0) == [2]


def test_the_view_refuses_regions_outside_the_file(tmp_path):
    (table,) = tables(tmp_path, "small", 1, 16)
    with pytest.raises(ValueError, match="outside"):
        _counters.ShmCells(table._mm, (table.bases[0] + 8,), table.own, table.mask, _shm.PROBES)
