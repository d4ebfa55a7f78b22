"""The device's cloud budget: requests and tokens per rolling hour and per rolling day.

A cloud request is charged when it is sent (`charge_request`, refused with BudgetExhausted when any window is
spent) and its tokens when the answer is back (`charge_tokens`). Token windows can therefore overshoot by the
tokens of requests in flight: a request is admitted while the window has any tokens left.

The clock is injectable (monotonic seconds); the budget is thread-safe (one lock, held only for arithmetic).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edged.config.budget import BudgetSettings
from edged.errors import BudgetExhausted, InvalidRequest

logger = logging.getLogger(__name__)

HOUR_S = 3600.0
DAY_S = 86400.0
WINDOWS = ("requests_per_hour", "requests_per_day", "tokens_per_hour", "tokens_per_day")


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Use and limits of the rolling windows (0 as a limit means unlimited); for GetStatus and metrics."""

    requests_this_hour: int
    requests_today: int
    tokens_this_hour: int
    tokens_today: int
    limits: BudgetSettings
    exhausted: str | None  # the first spent window ("tokens_per_hour", ...) or None


class _Window:
    """Events (time, amount) of one rolling window, with their running sum."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.events: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, now: float, amount: int) -> None:
        self.events.append((now, amount))
        self.total += amount

    def expire(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - self.span_s:
            self.total -= self.events.popleft()[1]


class CloudBudget:
    def __init__(self, settings: BudgetSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._windows = {
            "requests_per_hour": _Window(HOUR_S),
            "requests_per_day": _Window(DAY_S),
            "tokens_per_hour": _Window(HOUR_S),
            "tokens_per_day": _Window(DAY_S),
        }

    def update(self, settings: BudgetSettings) -> None:
        """Apply a new profile's limits; use so far is kept."""
        with self._lock:
            self._settings = settings

    def _spent(self, now: float) -> str | None:
        for name in WINDOWS:
            window = self._windows[name]
            window.expire(now)
            limit: int = getattr(self._settings, name)
            if limit and window.total >= limit:
                return name
        return None

    def exhausted(self) -> str | None:
        """The first spent window's name, or None while every window has room."""
        with self._lock:
            return self._spent(self._clock())

    def charge_request(self) -> None:
        """Count one cloud request now; BudgetExhausted (naming the window) when a window is spent."""
        with self._lock:
            now = self._clock()
            spent = self._spent(now)
            if spent is not None:
                limit = getattr(self._settings, spent)
                raise BudgetExhausted(f"cloud budget spent: {spent} = {limit}")
            self._windows["requests_per_hour"].add(now, 1)
            self._windows["requests_per_day"].add(now, 1)

    def charge_tokens(self, tokens: int) -> None:
        """Count the tokens (prompt + completion) of a cloud answer."""
        if tokens < 0:
            raise InvalidRequest("tokens", f"{tokens} is negative")
        with self._lock:
            now = self._clock()
            self._windows["tokens_per_hour"].add(now, tokens)
            self._windows["tokens_per_day"].add(now, tokens)

    def status(self) -> BudgetStatus:
        with self._lock:
            spent = self._spent(self._clock())
            w = self._windows
            return BudgetStatus(
                requests_this_hour=w["requests_per_hour"].total,
                requests_today=w["requests_per_day"].total,
                tokens_this_hour=w["tokens_per_hour"].total,
                tokens_today=w["tokens_per_day"].total,
                limits=self._settings,
                exhausted=spent,
            )


class FakeClock:
    """A clock a test moves by hand: the fake at the clock seam of CloudBudget and LoadSampler."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
