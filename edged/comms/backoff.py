"""Reconnect delays: doubling from a minimum to a maximum, jittered so a fleet does not reconnect in step."""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, min_s: float, max_s: float, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff bounds must satisfy 0 < min_s <= max_s, got {min_s} and {max_s}")
        self._min = min_s
        self._max = max_s
        self._jitter = jitter
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Delays handed out since the last reset."""
        return self._attempt

    def next_delay(self) -> float:
        base = min(self._max, self._min * (2 ** min(self._attempt, 32)))
        self._attempt += 1
        spread = base * self._jitter
        delay: float = base + self._rng.uniform(-spread, spread)
        return max(self._min, min(self._max, delay))

    def reset(self) -> None:
        self._attempt = 0
