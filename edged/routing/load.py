"""Device load, sampled in a background thread (never per request) from pluggable sources.

SystemSource      where readings come from: `PsutilSource` (the real device) or `FakeSystemSource` (tests)
EngineOccupancy   a callable the engine passes in: queue depth and slot use right now
LoadSampler       samples both every `limits.sample_interval_s` on its own thread; `latest()` is a lock-free
                  read; `interval_s` is read before each wait (a profile change)
over_limits()     which of the profile's limits a snapshot is beyond, as stable names
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import psutil

from edged.config.limits import LoadLimits

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SystemReading:
    """What the operating system says about the device right now."""

    cpu_percent: float = 0.0  # CPU used by everything but edged itself (percent of all cores)
    load_average_1m: float = 0.0
    cpu_count: int = 1
    memory_available_mb: float = 0.0
    memory_percent: float = 0.0
    temperature_c: float | None = None  # hottest sensor; None where the board has none
    battery_percent: float | None = None  # None where there is no battery
    charging: bool | None = None
    edged_cpu_percent: float = 0.0  # CPU used by edged's own process (its saturation is the queue depth)


@dataclass(frozen=True, slots=True)
class EngineLoad:
    queue_depth: int = 0
    slots_busy: int = 0
    slots_total: int = 0


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """One sample of device and engine load; `taken_at` is time.monotonic() seconds."""

    system: SystemReading
    engine: EngineLoad
    taken_at: float

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.taken_at)


class SystemSource(Protocol):
    def read(self) -> SystemReading: ...


EngineOccupancy = Callable[[], EngineLoad]


def over_limits(snapshot: LoadSnapshot, limits: LoadLimits) -> tuple[str, ...]:
    """Names of the limits the snapshot is beyond, in a fixed order (empty when within all)."""
    system, engine = snapshot.system, snapshot.engine
    beyond: list[str] = []
    if system.cpu_percent > limits.cpu_percent_max:
        beyond.append("cpu_percent")
    if system.load_average_1m / max(1, system.cpu_count) > limits.load_average_per_cpu_max:
        beyond.append("load_average")
    if system.memory_available_mb < limits.memory_available_mb_min:
        beyond.append("memory_available_mb")
    if system.temperature_c is not None and system.temperature_c > limits.temperature_c_max:
        beyond.append("temperature_c")
    discharging = system.charging is False
    if (
        discharging
        and system.battery_percent is not None
        and system.battery_percent < limits.battery_percent_min
    ):
        beyond.append("battery_percent")
    if engine.queue_depth > limits.queue_depth_max:
        beyond.append("queue_depth")
    return tuple(beyond)


class PsutilSource:
    """Readings from psutil. CPU percent is measured between consecutive reads (the first read primes it).

    `cpu_percent` is the CPU used by everything except edged's own process: edged decoding on every core would
    otherwise read as "the device is busy" and offload its own traffic. edged's own load is measured by its queue
    depth (the `queue_depth_max` limit); its CPU share is reported apart as `edged_cpu_percent`. The load average
    counts edged's threads too (the kernel does not split it by process): its limit is per core and set high.
    """

    def __init__(self, process: psutil.Process | None = None) -> None:
        self._process = process or psutil.Process()
        self._last = self._cpu_seconds()

    def _cpu_seconds(self) -> tuple[float, float, float]:
        """(total, busy, this process) CPU seconds so far, summed over all cores."""
        times = psutil.cpu_times()
        total = sum(times)
        # On Linux guest time is already counted in user and nice time (psutil's own cpu_percent subtracts it).
        total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
        busy = total - times.idle - getattr(times, "iowait", 0.0)
        own = self._process.cpu_times()
        return total, busy, own.user + own.system

    def _cpu_percents(self) -> tuple[float, float]:
        """(others, edged) percent of all cores since the previous read."""
        total, busy, own = self._cpu_seconds()
        last_total, last_busy, last_own = self._last
        self._last = (total, busy, own)
        elapsed = total - last_total
        if elapsed <= 0:
            return 0.0, 0.0
        mine = min(max(own - last_own, 0.0), elapsed)
        others = min(max(busy - last_busy - mine, 0.0), elapsed)
        return 100.0 * others / elapsed, 100.0 * mine / elapsed

    def read(self) -> SystemReading:
        memory = psutil.virtual_memory()
        battery = _battery()
        others, mine = self._cpu_percents()
        return SystemReading(
            cpu_percent=others,
            load_average_1m=float(os.getloadavg()[0]),
            cpu_count=os.cpu_count() or 1,
            memory_available_mb=memory.available / MIB,
            memory_percent=float(memory.percent),
            temperature_c=_hottest_sensor(),
            battery_percent=None if battery is None else float(battery.percent),
            charging=None if battery is None else bool(battery.power_plugged),
            edged_cpu_percent=mine,
        )


def _hottest_sensor() -> float | None:
    reader = getattr(psutil, "sensors_temperatures", None)  # absent on some platforms
    if reader is None:
        return None
    try:
        sensors = reader()
    except OSError:
        return None
    temps = [entry.current for entries in sensors.values() for entry in entries if entry.current]
    return max(temps) if temps else None


def _battery() -> Any:
    reader = getattr(psutil, "sensors_battery", None)
    if reader is None:
        return None
    try:
        return reader()
    except OSError:
        return None


class FakeSystemSource:
    """Readings a test sets: the fake at the SystemSource seam. `fail` makes the next reads raise."""

    def __init__(self, reading: SystemReading | None = None) -> None:
        self.reading = reading or SystemReading(cpu_count=2, memory_available_mb=4096.0)
        self.fail = False
        self.reads = 0

    def set(self, **changes: float | int | bool | None) -> None:
        self.reading = replace(self.reading, **changes)  # type: ignore[arg-type]

    def read(self) -> SystemReading:
        self.reads += 1
        if self.fail:
            raise OSError("fake source failure")
        return self.reading


def _checked_interval(interval_s: float) -> float:
    if not 0.01 <= interval_s <= 3600:
        raise ValueError(f"interval_s: {interval_s} is outside [0.01, 3600]")
    return interval_s


def _no_engine() -> EngineLoad:
    return EngineLoad()


class LoadSampler:
    """Samples the device on a background thread; requests read the latest snapshot and never wait on it.

    A source that fails is logged and the previous snapshot kept (its age grows), so a broken sensor never
    takes the daemon down.
    """

    def __init__(
        self,
        source: SystemSource,
        engine: EngineOccupancy = _no_engine,
        *,
        interval_s: Callable[[], float] = lambda: 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _checked_interval(interval_s())
        self._interval_s = (
            interval_s  # read before every wait: the running profile's limits.sample_interval_s
        )
        self._source = source
        self._engine = engine
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._latest = LoadSnapshot(SystemReading(), EngineLoad(), taken_at=clock())
        self.failures = 0

    def sample_once(self) -> LoadSnapshot:
        """Take one sample now (the thread calls this; tests may too)."""
        try:
            system = self._source.read()
        except Exception:  # any sensor fault: keep the previous reading, never crash
            self.failures += 1
            logger.warning("device load source failed; keeping the previous sample", exc_info=True)
            system = self._latest.system
        try:
            engine = self._engine()
        except Exception:  # same for the engine's occupancy callable
            self.failures += 1
            logger.warning("engine occupancy failed; keeping the previous value", exc_info=True)
            engine = self._latest.engine
        # A single reference assignment: readers on other threads see the old or the new snapshot, whole.
        self._latest = LoadSnapshot(system, engine, taken_at=self._clock())
        return self._latest

    def latest(self) -> LoadSnapshot:
        return self._latest

    @property
    def interval_s(self) -> float:
        """The interval of the next wait (a profile change takes effect from it; the one under way finishes)."""
        return _checked_interval(self._interval_s())

    def start(self) -> None:
        if self._thread is not None:
            return
        self.sample_once()
        self._thread = threading.Thread(target=self._run, name="edged-load-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_once()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
