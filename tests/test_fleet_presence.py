"""Presence through the Last Will, telemetry at the profile's interval, recovery from a crash mid-apply."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.fleet.envelope import Target
from tests.brokers import MosquittoBroker
from tests.fleet_device_process import CRASH_MODEL
from tests.fleet_support import WAIT_S, FleetKit, fleet_kit, profile_doc

pytestmark = [pytest.mark.mqtt]

GROUP = Target("group", "pi5")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def kit(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[FleetKit]:
    with fleet_kit(tmp_path, mosquitto) as kit:
        yield kit


def _device_process(kit: FleetKit, device: str) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-m",
        "tests.fleet_device_process",
        "--broker",
        kit.broker.url,
        "--device",
        device,
    ]
    argv += ["--group", "pi5", "--key", str(kit.public_key), "--state-dir", str(kit.root / device)]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)
    if process.stdout:
        process.stdout.close()


def test_presence_goes_offline_through_the_last_will_when_the_device_dies(kit: FleetKit) -> None:
    process = _device_process(kit, "pi-will")
    try:
        assert kit.observer.wait(
            lambda: kit.observer.statuses.get("pi-will", {}).get("state") == "online", WAIT_S
        )
        process.kill()
        process.wait(10)
        assert kit.observer.wait(
            lambda: kit.observer.statuses["pi-will"].get("state") == "offline", 3 * WAIT_S
        ), kit.observer.statuses["pi-will"]
        assert kit.observer.statuses["pi-will"]["cause"] == "connection lost"
    finally:
        _stop(process)


def test_clean_stop_publishes_offline_presence(kit: FleetKit) -> None:
    running = kit.agent("pi-stop")
    assert kit.observer.wait(
        lambda: kit.observer.statuses.get("pi-stop", {}).get("state") == "online", WAIT_S
    )
    running.stop()
    assert kit.observer.wait(lambda: kit.observer.statuses["pi-stop"].get("state") == "offline", WAIT_S)
    assert kit.observer.statuses["pi-stop"]["cause"] == "stopped"


def test_crash_during_apply_is_reported_as_interrupted_and_never_reapplied(kit: FleetKit) -> None:
    process = _device_process(kit, "pi-crash")
    try:
        kit.push(GROUP, profile_doc("good"), version=1)
        kit.ack("pi-crash", GROUP, 1)
        kit.push(GROUP, profile_doc("crashes", engine={"model": CRASH_MODEL}), version=2)
        assert process.wait(WAIT_S) == 70  # the daemon died inside the apply
    finally:
        _stop(process)
    running = kit.agent("pi-crash")  # the daemon restarts on the same state dir
    ack = kit.ack("pi-crash", GROUP, 2)
    assert (ack.outcome, ack.reason) == ("rolled_back", "interrupted")
    assert running.agent.profile.name == "good"
    assert running.applier.applied == []  # the retained crash profile is not applied again
    kit.push(GROUP, profile_doc("fixed"), version=3)
    assert kit.ack("pi-crash", GROUP, 3).outcome == "applied"


def test_telemetry_comes_at_the_profile_interval_with_the_daemon_data(kit: FleetKit) -> None:
    counter = iter(range(1_000_000))

    def telemetry() -> dict[str, object]:
        return {"requests_local": next(counter), "escalation_rate": 0.25}

    kit.agent("pi-tel", telemetry=telemetry)
    kit.push(GROUP, profile_doc("chatty", telemetry={"interval_s": 1.0}), version=1)
    kit.ack("pi-tel", GROUP, 1)

    def two_reports() -> bool:
        report = kit.observer.telemetry.get("pi-tel")
        return report is not None and report["data"]["requests_local"] >= 1

    assert kit.observer.wait(two_reports, WAIT_S)
    report = kit.observer.telemetry["pi-tel"]
    assert (report["profile"], report["layers"], report["data"]["escalation_rate"]) == (
        "chatty",
        {"group": 1},
        0.25,
    )


def test_a_failing_telemetry_source_is_reported_not_fatal(kit: FleetKit) -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("load sampler gone")

    running = kit.agent("pi-broken", telemetry=broken)
    kit.push(GROUP, profile_doc("chatty", telemetry={"interval_s": 1.0}), version=1)
    kit.ack("pi-broken", GROUP, 1)
    assert kit.observer.wait(lambda: "pi-broken" in kit.observer.telemetry, WAIT_S)
    assert "load sampler gone" in kit.observer.telemetry["pi-broken"]["data"]["error"]
    kit.push(GROUP, profile_doc("still-alive"), version=2)
    assert kit.ack("pi-broken", GROUP, 2).outcome == "applied"
    assert running.agent.profile.name == "still-alive"
