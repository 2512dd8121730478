"""Shared counters (meshway.plugins._shm): node-wide sums, window roll-over, a full table, fallbacks."""
from __future__ import annotations

import logging
import multiprocessing

import pytest

from meshway.plugins import _shm, attach_shared_memory, reset_shared_memory, shared_counters

T0 = 1_700_000_000


@pytest.fixture(autouse=True)
def fresh_tables(monkeypatch):
    """Each test starts detached, with no tables; attach_shared_memory's globals are restored."""
    monkeypatch.setattr(_shm, "_tables", {})
    monkeypatch.setattr(_shm, "_layout", None)


def table_for_test(directory, region: int, regions: int = 2, slots: int = 16, name: str = "t") -> _shm.ShmCounters:
    """Worker `region`'s handle on a table, as shared_counters gives it inside that worker."""
    attach_shared_memory(directory, region, regions)
    table = shared_counters(name, slots)
    assert isinstance(table, _shm.ShmCounters)
    return table


def _count_in_worker_for_test(directory, region: int, texts: list[str], rounds: int, barrier) -> None:
    table = table_for_test(directory, region, slots=1024)
    keys = [table.key(t) for t in texts]
    for _ in range(rounds):
        table.add(keys, [T0 + 60] * len(keys), T0)
    barrier.wait()


def test_two_processes_counting_the_same_keys_give_exact_totals(tmp_path):
    texts = [f"ratelimit:r:s:10.0.0.{i}:{T0}:minute" for i in range(20)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_count_in_worker_for_test, args=(tmp_path, r, texts, 3000, barrier)) for r in (0, 1)]
    for p in procs:
        p.start()
    barrier.wait(timeout=60)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    reader = table_for_test(tmp_path, 0, slots=1024)
    assert reader.totals([reader.key(t) for t in texts], T0) == [6000] * len(texts)
    assert reader.totals([reader.key("never counted")], T0) == [0]


def test_each_worker_writes_its_region_and_reads_the_sum(tmp_path):
    w0, w1 = table_for_test(tmp_path, 0), table_for_test(tmp_path, 1)
    k = w0.key("k")
    assert w1.key("k") == k  # the same hash in every process, unlike hash()
    w0.add([k], [T0 + 60], T0)
    w1.add([k, k], [T0 + 60, T0 + 60], T0)
    assert w0.totals([k], T0) == w1.totals([k], T0) == [3]
    own = [w0.cells[i + 2] for i in range(w0.own, w0.bases[1], _shm.ENTRY)]
    assert sorted(own)[-1] == 1  # worker 0's region holds only its own count


def test_window_roll_over_reads_zero_and_reuses_expired_slots(tmp_path):
    w0, w1 = table_for_test(tmp_path, 0), table_for_test(tmp_path, 1)
    old = [w0.key(f"minute {T0} client {i}") for i in range(16)]  # as many keys as slots
    w0.add(old, [T0 + 60] * 16, T0)
    assert w1.totals(old, T0 + 59) == [1] * 16
    assert w1.totals(old, T0 + 60) == [0] * 16  # the window is over
    new = [w0.key(f"minute {T0 + 60} client {i}") for i in range(16)]
    w0.add(new, [T0 + 120] * 16, T0 + 60)
    assert w1.totals(new, T0 + 60) == [1] * 16
    assert not w0.overflow.counts  # every new key took an expired slot


def test_colliding_keys_probe_and_a_key_never_has_two_live_entries(tmp_path):
    w0, w1 = table_for_test(tmp_path, 0), table_for_test(tmp_path, 1)
    a, b, c = 5, 5 + 16, 5 + 32  # three keys with the same home slot in a 16-slot table
    w0.add([a, b], [T0 + 1, T0 + 60], T0)
    w1.add([b], [T0 + 60], T0)
    assert w1.totals([a, b, c], T0) == [1, 2, 0]
    w0.add([b, c], [T0 + 60, T0 + 60], T0 + 1)  # a expired: c takes its slot, b is found past it
    assert w0.totals([a, b, c], T0 + 1) == [0, 3, 1]
    assert sum(1 for i in range(w0.own, w0.bases[1], _shm.ENTRY) if w0.cells[i] == b) == 1


def test_a_full_table_counts_per_worker_and_logs_once(tmp_path, caplog):
    w0, w1 = table_for_test(tmp_path, 0), table_for_test(tmp_path, 1)
    keys = [16 * i + 3 for i in range(1, 20)]  # 19 keys, one home slot, 16 probes
    with caplog.at_level(logging.WARNING, logger="meshway.plugins"):
        w0.add(keys, [T0 + 60] * len(keys), T0)
        w0.add(keys, [T0 + 60] * len(keys), T0)
    assert w0.totals(keys, T0) == [2] * len(keys)  # nothing lost in this worker
    assert w1.totals(keys, T0) == [2] * 16 + [0] * 3  # the overflow is per worker
    assert [r.message for r in caplog.records].count(
        "shared counters 't': table full (16 slots per worker); counting some keys per worker") == 1


def test_the_file_lives_in_the_prefix_and_its_header_sets_the_layout(tmp_path):
    directory = reset_shared_memory(tmp_path)
    first = table_for_test(directory, 0, slots=100)
    assert (directory / "t.2").stat().st_size == (8 + 2 * 128 * 3) * 8  # slots rounded up to 128
    second = table_for_test(directory, 1, slots=4096)  # the creator's size wins
    assert second.mask == first.mask == 127
    first.add([first.key("x")], [T0 + 1], T0)
    assert reset_shared_memory(tmp_path) == directory and list(directory.iterdir()) == []


def test_a_foreign_file_or_a_worker_without_region_falls_back_in_process(tmp_path, caplog):
    (tmp_path / "bad.2").write_bytes(b"not a table")
    attach_shared_memory(tmp_path, 0, 2)
    with caplog.at_level(logging.ERROR, logger="meshway.plugins"):
        assert isinstance(shared_counters("bad"), _shm.InProcessCounters)
    table_for_test(tmp_path, 0, regions=2, name="ok")
    attach_shared_memory(tmp_path, 2, 2)
    assert isinstance(shared_counters("ok"), _shm.InProcessCounters)
    assert len(caplog.records) == 2


def test_without_a_node_a_table_is_one_in_process_dict_per_name():
    table = shared_counters("rl")
    assert isinstance(table, _shm.InProcessCounters) and shared_counters("rl") is table
    k = table.key("k")
    table.add([k, k], [T0 + 1, T0 + 1], T0)
    assert table.totals([k], T0) == [2] and table.totals([k], T0 + 1) == [0]
    table.add([k], [T0 + 2], T0 + 1)  # an expired entry starts over
    assert table.totals([k], T0 + 1) == [1] and len(table.counts) == 1
