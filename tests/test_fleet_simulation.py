"""A simulated fleet (many devices running the real FleetDevice code, no models) on one real Mosquitto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.fleet.envelope import Target
from edged.fleet.simulation import SimulatedApplier, SimulatedFleet
from tests.brokers import MosquittoBroker
from tests.fleet_support import WAIT_S, FleetKit, fleet_kit, profile_doc

pytestmark = [pytest.mark.mqtt]

COUNT = 60
GROUP = Target("group", "field")


@pytest.fixture
def kit(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[FleetKit]:
    with fleet_kit(tmp_path, mosquitto) as kit:
        yield kit


@pytest.fixture
def fleet(kit: FleetKit) -> Iterator[SimulatedFleet]:
    failing = iter(range(COUNT))

    def applier() -> SimulatedApplier:  # every tenth device cannot load the bigger model
        return SimulatedApplier(fail_models={"gemma-3-270m-q4_k_m"} if next(failing) % 10 == 0 else set())

    fleet = SimulatedFleet(
        kit.broker.url,
        kit.root / "fleet",
        kit.public_key,
        count=COUNT,
        group="field",
        connections=3,
        workers=3,
        applier_factory=applier,
    )
    fleet.start()
    assert kit.observer.wait(lambda: len(kit.observer.states) == COUNT, WAIT_S)
    yield fleet
    fleet.stop()


def _acks(kit: FleetKit, target: Target, version: int, devices: int) -> dict[str, str]:
    acks = kit.observer.wait_acks("profile", target, version, devices, WAIT_S)
    return {device: f"{ack.outcome}:{ack.reason}" for device, ack in acks.items()}


def test_group_push_reaches_every_simulated_device(kit: FleetKit, fleet: SimulatedFleet) -> None:
    kit.push(GROUP, profile_doc("field-v1", engine={"threads": 2}), version=1)
    acks = _acks(kit, GROUP, 1, COUNT)
    assert set(acks.values()) == {"applied:None"}
    assert len(acks) == COUNT
    assert all(a.current is not None and a.current.engine.threads == 2 for a in fleet.appliers)
    # each device recorded the version durably in its own state dir before applying
    versions = json.loads((kit.root / "fleet" / "sim-00007" / "fleet" / "versions.json").read_text())
    assert versions["streams"]["profile:group:field"]["version"] == 1
    done = {"applied": COUNT, "rejected": 0, "rolled_back": 0, "pending": 0}
    # the state document follows each ack: wait until the last one arrived
    assert kit.observer.wait(lambda: kit.observer.status("field").counts == done, WAIT_S)


def test_partial_failure_rolls_back_only_the_failing_devices(kit: FleetKit, fleet: SimulatedFleet) -> None:
    kit.push(GROUP, profile_doc("field-v1"), version=1)
    _acks(kit, GROUP, 1, COUNT)
    kit.push(GROUP, profile_doc("field-v2", engine={"model": "gemma-3-270m-q4_k_m"}), version=2)
    acks = _acks(kit, GROUP, 2, COUNT)
    rolled_back = sorted(d for d, outcome in acks.items() if outcome == "rolled_back:apply_failed")
    assert rolled_back == [f"sim-{n:05d}" for n in range(0, COUNT, 10)]
    assert sum(outcome == "applied:None" for outcome in acks.values()) == COUNT - len(rolled_back)
    assert fleet.devices[0].profile.name == "field-v1"
    assert fleet.devices[1].profile.name == "field-v2"


def test_device_override_and_rejections_inside_a_fleet(kit: FleetKit, fleet: SimulatedFleet) -> None:
    kit.push(GROUP, profile_doc("field-v1", engine={"slots": 4}), version=1)
    _acks(kit, GROUP, 1, COUNT)
    one = Target("device", "sim-00003")
    kit.push(one, profile_doc("special", engine={"threads": 1}), version=1)
    assert _acks(kit, one, 1, 1) == {"sim-00003": "applied:None"}
    special = fleet.devices[3].profile
    assert (special.name, special.engine.threads, special.engine.slots) == ("special", 1, 4)
    expired = kit.signer.sign(
        "profile", 2, GROUP, profile_doc("stale"), lifetime_s=60, issued_at=1_000_000_000
    )
    kit.publish(GROUP, expired)
    acks = _acks(kit, GROUP, 2, COUNT)
    assert set(acks.values()) == {"rejected:expired"}
    assert {d.profile.name for d in fleet.devices} == {"field-v1", "special"}
