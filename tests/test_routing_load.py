"""Device load: the real psutil source, the fake at the seam, limits by name, and the background sampler."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil
import pytest

from edged.config.limits import LoadLimits
from edged.routing.budget import FakeClock
from edged.routing.load import (
    EngineLoad,
    FakeSystemSource,
    LoadSampler,
    LoadSnapshot,
    PsutilSource,
    SystemReading,
    over_limits,
)
from edged.service.report import load_info


def test_psutil_source_reads_this_machine() -> None:
    source = PsutilSource()
    reading = source.read()
    assert 0.0 <= reading.cpu_percent <= 100.0
    assert reading.cpu_count >= 1
    assert reading.load_average_1m >= 0.0
    assert reading.memory_available_mb > 0.0
    assert 0.0 < reading.memory_percent < 100.0
    assert reading.temperature_c is None or -40.0 < reading.temperature_c < 150.0
    assert (reading.battery_percent is None) == (reading.charging is None)


def _spin_until(process: psutil.Process, cpu_seconds: float) -> None:
    """Burn CPU in this thread until `process` has used `cpu_seconds` more (CPU time, not wall time)."""
    start = sum(process.cpu_times()[:2])
    while sum(process.cpu_times()[:2]) - start < cpu_seconds:
        sum(i * i for i in range(10_000))


def test_edged_busy_on_an_idle_machine_is_not_over_the_cpu_limit() -> None:
    """edged's own decoding is its queue's business: cpu_percent counts everyone else, edged is reported apart."""
    source = PsutilSource()
    _spin_until(psutil.Process(), 0.6)
    reading = source.read()
    assert reading.edged_cpu_percent > 30.0
    assert reading.cpu_percent < reading.edged_cpu_percent
    snapshot = LoadSnapshot(reading, EngineLoad(), 0.0)
    assert "cpu_percent" not in over_limits(snapshot, LoadLimits(cpu_percent_max=30.0))


def test_another_process_busy_counts_as_device_load() -> None:
    source = PsutilSource()
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = psutil.Process(child.pid)
        while sum(busy.cpu_times()[:2]) < 0.6:
            time.sleep(0.05)
        reading = source.read()
    finally:
        child.kill()
        child.wait()
    assert reading.cpu_percent > 20.0
    assert reading.cpu_percent > reading.edged_cpu_percent


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, ()),
        ({"cpu_percent": 90.5}, ("cpu_percent",)),
        ({"cpu_percent": 90.0}, ()),
        ({"load_average_1m": 8.5}, ("load_average",)),
        ({"memory_available_mb": 100.0}, ("memory_available_mb",)),
        ({"temperature_c": 81.0}, ("temperature_c",)),
        ({"battery_percent": 10.0, "charging": False}, ("battery_percent",)),
        ({"battery_percent": 10.0, "charging": True}, ()),
        ({"cpu_percent": 99.0, "temperature_c": 99.0}, ("cpu_percent", "temperature_c")),
    ],
)
def test_over_limits_names_each_limit(changes: dict[str, float | bool], expected: tuple[str, ...]) -> None:
    source = FakeSystemSource(SystemReading(cpu_count=2, memory_available_mb=4096.0))
    source.set(**changes)
    snapshot = LoadSnapshot(source.read(), EngineLoad(), 0.0)
    assert over_limits(snapshot, LoadLimits()) == expected


def test_queue_depth_comes_from_the_engine_callable() -> None:
    occupancy = EngineLoad(queue_depth=5, slots_busy=8, slots_total=8)
    sampler = LoadSampler(FakeSystemSource(), lambda: occupancy)
    snapshot = sampler.sample_once()
    assert snapshot.engine == occupancy
    assert over_limits(snapshot, LoadLimits(queue_depth_max=4)) == ("queue_depth",)
    assert over_limits(snapshot, LoadLimits(queue_depth_max=5)) == ()


def test_a_failing_source_keeps_the_last_sample_and_ages_it() -> None:
    clock = FakeClock()
    source = FakeSystemSource()
    source.set(cpu_percent=42.0)
    sampler = LoadSampler(source, clock=clock)
    first = sampler.sample_once()
    source.fail = True
    clock.advance(7.0)
    second = sampler.sample_once()
    assert second.system.cpu_percent == 42.0
    assert sampler.failures == 1
    assert second.age_s(clock()) == 0.0
    assert first.age_s(clock()) == 7.0


def test_a_failing_engine_callable_is_survived() -> None:
    def broken() -> EngineLoad:
        raise RuntimeError("engine gone")

    sampler = LoadSampler(FakeSystemSource(), broken)
    assert sampler.sample_once().engine == EngineLoad()
    assert sampler.failures == 1


class _CountingSource(FakeSystemSource):
    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.wanted = wanted
        self.enough = threading.Event()

    def read(self) -> SystemReading:
        reading = super().read()
        if self.reads >= self.wanted:
            self.enough.set()
        return reading


def test_background_thread_samples_until_stopped() -> None:
    source = _CountingSource(wanted=3)
    sampler = LoadSampler(source, interval_s=lambda: 0.01)
    sampler.start()
    try:
        assert source.enough.wait(timeout=30.0)
    finally:
        sampler.stop()
    reads = source.reads
    source.set(cpu_percent=77.0)
    assert sampler.latest().system.cpu_percent != 77.0  # stopped: nothing reads the source any more
    assert source.reads == reads


def test_interval_out_of_bounds_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"interval_s: 0\.0 is outside"):
        LoadSampler(FakeSystemSource(), interval_s=lambda: 0.0)


def test_load_as_status() -> None:
    clock = FakeClock()
    source = FakeSystemSource()
    source.set(cpu_percent=95.0, temperature_c=55.0)
    snapshot = LoadSampler(source, clock=clock).sample_once()
    clock.advance(1.5)
    info = load_info(snapshot, LoadLimits(), clock())
    assert (info.cpu_percent, info.temperature_c, info.age_s) == (95.0, 55.0, 1.5)
    assert info.over_limits == ("cpu_percent",)
    assert info.battery_percent is None
