"""Reconnect delays grow, jitter, cap and reset."""
from __future__ import annotations

import random

import pytest

from meshway.cluster._backoff import Backoff


def test_grows_exponentially_then_caps():
    b = Backoff(initial=1, cap=10, jitter=0)
    assert [b.next() for _ in range(6)] == [1, 2, 4, 8, 10, 10]


def test_jitter_spreads_a_fleet_and_stays_within_cap():
    delays = {round(Backoff(1, 30, rng=random.Random(seed)).next(), 3) for seed in range(50)}
    assert len(delays) > 40 and all(0.75 <= d <= 1.25 for d in delays)
    b = Backoff(1, 30, rng=random.Random(1))
    assert all(d <= 30 for d in (b.next() for _ in range(100)))


def test_reset_starts_over():
    b = Backoff(initial=1, cap=10, jitter=0)
    b.next(), b.next(), b.next()
    b.reset()
    assert b.next() == 1


def test_rejects_nonsense():
    with pytest.raises(ValueError):
        Backoff(initial=0)
