"""Reconnect delays: exponential with jitter, capped, so a fleet never reconnects in lockstep."""
from __future__ import annotations

import random


class Backoff:
    """Delay before the next attempt: initial * factor**n, +-jitter, at most cap."""

    def __init__(self, initial: float = 1.0, cap: float = 30.0, factor: float = 2.0, jitter: float = 0.25,
                 rng: random.Random | None = None) -> None:
        if initial <= 0 or cap < initial or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial <= cap, factor >= 1, 0 <= jitter < 1")
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        base = min(self.cap, self.initial * self.factor ** min(self._attempt, 64))
        self._attempt += 1
        spread = base * self.jitter * (2 * self._rng.random() - 1)
        return max(self.initial * (1 - self.jitter), min(self.cap, base + spread))

    def reset(self) -> None:
        self._attempt = 0
