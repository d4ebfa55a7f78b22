"""A device that lost its fleet state never goes below the version its own retained state reports (issue 17:
21): one FleetDevice without a broker, its retained state fed to receive() as the broker would, first."""

from __future__ import annotations

import json
from pathlib import Path

from edged.fleet.store import StreamState
from tests.fleet_support import profile_doc
from tests.test_fleet_rebase import GROUP, TOPICS, Device

STREAM = GROUP.stream("profile")


def own_state(dev: Device) -> tuple[str, bytes]:
    document = dev.device.state_document()
    return TOPICS.device("dev", "state"), json.dumps(document).encode()


def test_the_own_state_topic_is_subscribed_before_any_profile(tmp_path: Path) -> None:
    topics = Device(tmp_path).device.inbound_topics()
    assert topics[0] == TOPICS.device("dev", "state")
    assert topics.index(TOPICS.inbound("profile", GROUP)) > 0


def test_a_device_without_state_refuses_a_retained_profile_older_than_it_reported(tmp_path: Path) -> None:
    before = Device(tmp_path / "before")
    assert before.push(profile_doc("v7"), 7)["outcome"] == "applied"
    topic, retained = own_state(before)

    fresh = Device(tmp_path / "lost")  # the same device id, an empty state directory
    fresh.device.receive(topic, retained)
    record = fresh.device.store.stream(STREAM)
    assert record is not None
    assert (record.version, record.state) == (7, StreamState.LEARNED)

    ack = fresh.push(profile_doc("v5"), 5)
    assert (ack["outcome"], ack["reason"]) == ("rejected", "rollback")
    assert "version 5 is below 7, the highest this device reported" in ack["detail"]
    assert fresh.applier.applied == []
    # the version it ran may be applied again (it is what the group's retained topic holds normally)
    assert fresh.push(profile_doc("v7"), 7)["outcome"] == "applied"
    assert fresh.device.profile.name == "v7"


def test_a_device_with_state_keeps_its_own_record_whatever_the_broker_says(tmp_path: Path) -> None:
    dev = Device(tmp_path)
    assert dev.push(profile_doc("v3"), 3)["outcome"] == "applied"
    claimed = {"streams": {STREAM: {"version": 90, "state": "applied"}}}
    dev.device.receive(TOPICS.device("dev", "state"), json.dumps(claimed).encode())
    record = dev.device.store.stream(STREAM)
    assert record is not None
    assert (record.version, record.state) == (3, StreamState.APPLIED)
    assert dev.push(profile_doc("v4"), 4)["outcome"] == "applied"


def test_a_malformed_own_state_is_ignored(tmp_path: Path) -> None:
    dev = Device(tmp_path)
    for payload in (b"", b"not json", b"[1]", b'{"streams": {"profile:group:pi5": {"version": "7"}}}'):
        dev.device.receive(TOPICS.device("dev", "state"), payload)
    assert dev.device.store.streams() == {}
    assert dev.push(profile_doc("v1"), 1)["outcome"] == "applied"
