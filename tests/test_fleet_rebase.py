"""FleetDevice.rebase: the daemon reloaded its config or local profile, and the fleet's layers go on the new base.

One FleetDevice without a broker: signed envelopes go straight into receive(), acks are collected from its
publish callable, and the applier is SimulatedApplier (the daemon's applier without a model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edged.config.daemon import DaemonConfig
from edged.config.engine import EngineSettings
from edged.config.fleet import FleetSettings
from edged.fleet.agent import load_keyring
from edged.fleet.device import FleetDevice
from edged.fleet.envelope import Target
from edged.fleet.keys import Signer
from edged.fleet.outcome import ApplyResult, ProfileBase
from edged.fleet.simulation import SimulatedApplier
from edged.fleet.store import FleetStore
from edged.fleet.topics import FleetTopics
from tests.fleet_support import HOUR, make_signer, profile_doc

GROUP = Target("group", "pi5")
TOPICS = FleetTopics()


class Device:
    """A FleetDevice for device "dev" in group pi5 with what it acked and how often it reported a change."""

    def __init__(self, tmp: Path) -> None:
        self.signer, public = make_signer(tmp / "keys", "fleet.key")
        self.settings = FleetSettings(group="pi5", key=public)
        self.state_dir = tmp / "state"
        self.applier = SimulatedApplier()
        self.acks: list[dict[str, Any]] = []
        self.changes = 0
        store = FleetStore(self.state_dir)
        self.device = FleetDevice(
            "dev",
            self.settings,
            store,
            load_keyring(self.settings, store),
            ProfileBase(self.config(default_max_tokens=16)),
            self.applier,
            self._publish,
            TOPICS,
            on_change=self._changed,
        )

    def config(self, **engine: Any) -> DaemonConfig:
        settings = EngineSettings(threads=1, **engine)
        return DaemonConfig(device_id="dev", state_dir=self.state_dir, fleet=self.settings, engine=settings)

    def push(self, profile: dict[str, Any], version: int, signer: Signer | None = None) -> dict[str, Any]:
        payload = (signer or self.signer).sign("profile", version, GROUP, profile, lifetime_s=HOUR)
        self.device.receive(TOPICS.inbound("profile", GROUP), payload)
        return self.acks[-1]

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if topic.endswith("/ack"):
            self.acks.append(json.loads(payload))

    def _changed(self) -> None:
        self.changes += 1


def test_rebase_keeps_the_fleet_layer_and_later_pushes_merge_on_the_new_base(tmp_path: Path) -> None:
    dev = Device(tmp_path)
    assert dev.push(profile_doc("capped", engine={"max_tokens_cap": 300}), 1)["outcome"] == "applied"
    assert dev.changes == 1

    outcome = dev.device.rebase(ProfileBase(dev.config(default_max_tokens=8, max_tokens_cap=350)))
    assert outcome.result is ApplyResult.APPLIED
    engine = dev.device.profile.engine
    assert (dev.device.profile.name, engine.max_tokens_cap, engine.default_max_tokens) == ("capped", 300, 8)
    assert dev.applier.current == dev.device.profile
    assert dev.changes == 2

    assert dev.push(profile_doc("capped-2", engine={"max_tokens_cap": 280}), 2)["outcome"] == "applied"
    engine = dev.device.profile.engine
    assert (engine.max_tokens_cap, engine.default_max_tokens) == (280, 8)  # the reloaded base, not 16


def test_a_base_the_layers_do_not_validate_on_changes_nothing(tmp_path: Path) -> None:
    dev = Device(tmp_path)
    dev.push(profile_doc("capped", engine={"max_tokens_cap": 300}), 1)
    before, applied = dev.device.profile, len(dev.applier.applied)

    outcome = dev.device.rebase(ProfileBase(dev.config(default_max_tokens=400, max_tokens_cap=500)))
    assert outcome.result is ApplyResult.ROLLED_BACK
    assert "default_max_tokens" in outcome.reason
    assert dev.device.profile == before
    assert len(dev.applier.applied) == applied  # never handed to the applier
    # the old base stays for later pushes too
    dev.push(profile_doc("capped-2", engine={"max_tokens_cap": 280}), 2)
    assert dev.device.profile.engine.default_max_tokens == 16


def test_a_base_the_applier_rolls_back_changes_nothing(tmp_path: Path) -> None:
    dev = Device(tmp_path)
    dev.push(profile_doc("capped", engine={"max_tokens_cap": 300}), 1)
    before, changes = dev.device.profile, dev.changes
    dev.applier.fail_models.add("broken")

    outcome = dev.device.rebase(ProfileBase(dev.config(model="broken")))
    assert outcome.result is ApplyResult.ROLLED_BACK
    assert "broken" in outcome.reason
    assert dev.device.profile == before
    assert dev.changes == changes
    dev.push(profile_doc("capped-2", engine={"max_tokens_cap": 280}), 2)
    assert dev.device.profile.engine.model != "broken"


def test_a_failing_change_listener_does_not_cost_the_ack(tmp_path: Path) -> None:
    dev = Device(tmp_path)

    def broken() -> None:
        raise RuntimeError("gauge gone")

    dev.device.on_change = broken
    ack = dev.push(profile_doc("capped", engine={"max_tokens_cap": 300}), 1)
    assert ack["outcome"] == "applied"
    assert dev.device.profile.name == "capped"
