"""The device's cloud budget: requests and tokens per rolling hour and per rolling day, kept across restarts.

A cloud request is charged when it is sent (`charge_request`, refused with BudgetExhausted when any window is
spent) and its tokens when the answer is back (`charge_tokens`): the worker's usage figures, or, for an answer
that failed or was cut short (no usage came back), an estimate from what was sent and received
(`estimated_tokens`). Token windows can therefore overshoot by the tokens of requests in flight: a request is
admitted while the window has any tokens left.

Charges within BUCKET_S of each other share one bucket, which leaves its windows when its latest charge does:
a window holds at most span / BUCKET_S + 1 buckets, whatever the traffic, and a charge may count up to BUCKET_S
longer than its own time, never shorter.

With a BudgetFile the day windows (the hour windows are their last hour) are written to the state directory
after every charge and read back at start, so a restart does not hand out a fresh budget. A save is a file
write and two fsyncs: with a FileWriter (the daemon's) it runs on the writer's thread, one save of the newest
state for any number of charges made meanwhile, and the charge methods never wait on the disk (issue 17: 5);
without one the charge itself saves.

The clock is injectable (monotonic seconds); the budget is thread-safe (one lock, held only for arithmetic).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.config.budget import BudgetSettings
from edged.errors import BudgetExhausted, InvalidRequest
from edged.files import FileWriter, write_atomic

logger = logging.getLogger(__name__)

HOUR_S = 3600.0
DAY_S = 86400.0
WINDOWS = ("requests_per_hour", "requests_per_day", "tokens_per_hour", "tokens_per_day")
BUCKET_S = 60.0
BUDGET_FILE = "budget.json"
FILE_FORMAT = 1
MAX_FILE_BYTES = 256 * 1024  # a full day of buckets for both kinds is ~75 KB
MAX_BUCKETS = 2 * int(DAY_S / BUCKET_S)  # per kind; a day holds at most DAY_S / BUCKET_S + 2
MAX_AMOUNT = 10**15
CHARS_PER_TOKEN = 4  # the usual estimate for English text with a BPE tokenizer


def estimated_tokens(chars: int) -> int:
    """Tokens of `chars` characters when no tokenizer counted them: one per CHARS_PER_TOKEN, rounded up."""
    return -(-max(0, chars) // CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Use and limits of the rolling windows (0 as a limit means unlimited); for GetStatus and metrics."""

    requests_this_hour: int
    requests_today: int
    tokens_this_hour: int
    tokens_today: int
    limits: BudgetSettings
    exhausted: str | None  # the first spent window ("tokens_per_hour", ...) or None


@dataclass(slots=True)
class _Bucket:
    start: float  # the first charge's time
    last: float  # the latest charge's time: the bucket leaves a window when this does
    amount: int


class _Window:
    """Buckets of one rolling window, with their running sum."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.buckets: deque[_Bucket] = deque()
        self.total = 0

    def add(self, now: float, amount: int) -> None:
        newest = self.buckets[-1] if self.buckets else None
        if newest is not None and newest.start <= now < newest.start + BUCKET_S:
            newest.last = max(newest.last, now)
            newest.amount += amount
        else:
            self.buckets.append(_Bucket(now, now, amount))
        self.total += amount

    def expire(self, now: float) -> None:
        while self.buckets and self.buckets[0].last <= now - self.span_s:
            self.total -= self.buckets.popleft().amount


# The saved use of one kind ("requests", "tokens"): (age in seconds, amount) per bucket.
Ages = list[tuple[float, int]]


class BudgetFile:
    """The day windows on disk (JSON, mode 0600), stamped with wall-clock time so they outlive a reboot.

    `save` writes a temporary file, fsyncs it, renames it over the old one and fsyncs the directory: a crash
    leaves the old file or the new one, never half of one. `load` never raises: a missing file is a first
    start, an unreadable, oversized or malformed one is logged as a warning; both give a fresh budget. A save
    that fails is logged and the budget goes on in memory."""

    def __init__(self, path: Path, wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self._wall = wall
        self.write_failures = 0

    def load(self) -> dict[str, Ages]:
        """(age, amount) per kind, oldest first; empty kinds for a fresh budget."""
        try:
            with self.path.open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            logger.info("no saved cloud budget at %s: starting with a fresh budget", self.path)
            return {"requests": [], "tokens": []}
        except OSError as exc:
            return self._fresh(f"cannot be read: {exc}")
        if len(data) > MAX_FILE_BYTES:
            return self._fresh(f"is larger than {MAX_FILE_BYTES} bytes")
        try:
            stamps = _parse(data)
        except ValueError as exc:
            return self._fresh(str(exc))
        now = self._wall()
        # A stamp in the future (the clock went back) counts as now: use is never forgotten early.
        return {
            kind: sorted(
                ((max(0.0, now - stamp), amount) for stamp, amount in pairs if now - stamp < DAY_S),
                key=lambda pair: -pair[0],
            )
            for kind, pairs in stamps.items()
        }

    def save(self, ages: Mapping[str, Iterable[tuple[float, int]]]) -> None:
        now = self._wall()
        document = {
            "format": FILE_FORMAT,
            **{
                kind: [[round(now - age, 3), amount] for age, amount in pairs] for kind, pairs in ages.items()
            },
        }
        try:
            write_atomic(self.path, json.dumps(document, separators=(",", ":")).encode("ascii"))
        except OSError as exc:
            self.write_failures += 1
            # one line per failure streak, not one per cloud request
            level = logging.ERROR if self.write_failures == 1 else logging.DEBUG
            logger.log(level, "cloud budget not saved to %s (kept in memory): %s", self.path, exc)
            return
        if self.write_failures:
            logger.info("cloud budget saved to %s again", self.path)
            self.write_failures = 0

    def _fresh(self, problem: str) -> dict[str, Ages]:
        logger.warning("saved cloud budget %s %s: starting with a fresh budget", self.path, problem)
        return {"requests": [], "tokens": []}


def _parse(data: bytes) -> dict[str, list[tuple[float, int]]]:
    """(wall-clock stamp, amount) per kind; ValueError naming what is wrong."""
    try:
        document: Any = json.loads(data)
    except (ValueError, RecursionError) as exc:  # undecodable, not JSON, or nested too deep
        raise ValueError(f"is not JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        raise ValueError(f"is not a format {FILE_FORMAT} budget file")
    parsed: dict[str, list[tuple[float, int]]] = {}
    for kind in ("requests", "tokens"):
        pairs = document.get(kind)
        if not isinstance(pairs, list) or len(pairs) > MAX_BUCKETS:
            raise ValueError(f"has no list of at most {MAX_BUCKETS} {kind} buckets")
        parsed[kind] = [_pair(kind, pair) for pair in pairs]
    return parsed


def _pair(kind: str, pair: object) -> tuple[float, int]:
    if isinstance(pair, list) and len(pair) == 2:
        stamp, amount = pair
        if (
            isinstance(stamp, (int, float))
            and math.isfinite(stamp)
            and isinstance(amount, int)
            and not isinstance(amount, bool)
            and 0 <= amount <= MAX_AMOUNT
        ):
            return float(stamp), amount
    raise ValueError(f"has a {kind} bucket that is not [time, amount]: {str(pair)[:40]}")


class CloudBudget:
    def __init__(
        self,
        settings: BudgetSettings,
        clock: Callable[[], float] = time.monotonic,
        file: BudgetFile | None = None,
        writer: FileWriter | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._file = file
        self._writer = writer
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # one save at a time, each of the newest state
        self._save_queued = threading.Event()  # a save is with the writer and has not taken its snapshot yet
        self._windows = {
            "requests_per_hour": _Window(HOUR_S),
            "requests_per_day": _Window(DAY_S),
            "tokens_per_hour": _Window(HOUR_S),
            "tokens_per_day": _Window(DAY_S),
        }
        if file is not None:
            self._restore(file.load())

    @classmethod
    def open(cls, settings: BudgetSettings, state_dir: Path, writer: FileWriter | None = None) -> CloudBudget:
        """The budget saved in `state_dir` (fresh when there is none), saving every charge there (through
        `writer` when given)."""
        return cls(settings, file=BudgetFile(state_dir / BUDGET_FILE), writer=writer)

    def reconfigured(self, settings: BudgetSettings) -> CloudBudget:
        """This budget under a new profile's limits: the same use so far, windows, file and locks (a charge
        through either counts in both), so a profile change swaps it in whole and keeps what was spent."""
        if settings == self._settings:
            return self
        budget = copy.copy(self)
        budget._settings = settings
        return budget

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
        self._save()

    def charge_tokens(self, tokens: int) -> None:
        """Count the tokens (prompt + completion) of a cloud answer."""
        if tokens < 0:
            raise InvalidRequest("tokens", f"{tokens} is negative")
        with self._lock:
            now = self._clock()
            self._windows["tokens_per_hour"].add(now, tokens)
            self._windows["tokens_per_day"].add(now, tokens)
        self._save()

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

    # -- persistence -------------------------------------------------------------------------------------

    def _restore(self, saved: Mapping[str, Ages]) -> None:
        now = self._clock()
        for kind in ("requests", "tokens"):
            for age, amount in saved.get(kind, ()):
                self._windows[f"{kind}_per_hour"].add(now - age, amount)
                self._windows[f"{kind}_per_day"].add(now - age, amount)
        if any(saved.values()):
            status = self.status()
            logger.info(
                "cloud budget restored: %d requests and %d tokens in the last day",
                status.requests_today,
                status.tokens_today,
            )

    def _save(self) -> None:
        if self._file is None:
            return
        if self._writer is None:
            self._save_now(self._file)
            return
        with self._lock:
            if self._save_queued.is_set():
                return  # the queued save has not taken its snapshot yet: it will hold this charge too
            self._save_queued.set()
        self._writer.submit(functools.partial(self._save_now, self._file))

    def _save_now(self, file: BudgetFile) -> None:
        with self._save_lock:
            # the snapshot is taken under the save lock, so the last file written holds the newest state
            with self._lock:
                self._save_queued.clear()
                now = self._clock()
                ages: dict[str, Ages] = {}
                for kind in ("requests", "tokens"):
                    window = self._windows[f"{kind}_per_day"]
                    window.expire(now)
                    ages[kind] = [(now - b.last, b.amount) for b in window.buckets]
            file.save(ages)


class FakeClock:
    """A clock a test moves by hand: the fake at the clock seam of CloudBudget and LoadSampler."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
