"""FleetObserver keeps a bounded view, whatever is published on the fleet's topics (issue 17: 8)."""

from __future__ import annotations

import json
from typing import cast

import pytest

from edged.comms import ThreadLink, TopicHandler
from edged.fleet.observer import MAX_ACKED_VERSIONS, FleetObserver
from edged.fleet.topics import FleetTopics

TOPICS = FleetTopics()


class RecordingLink:
    """The observer's side of a link (a seam): what it subscribed, and a way to deliver to it."""

    def __init__(self) -> None:
        self.handlers: list[tuple[str, TopicHandler]] = []

    def subscribe(self, topic: str, handler: TopicHandler, qos: int = 1) -> None:
        self.handlers.append((topic, handler))

    def deliver(self, topic: str, payload: bytes) -> None:
        leaf = topic.rsplit("/", 1)[1]
        for subscribed, handler in self.handlers:
            if subscribed.endswith(f"/{leaf}") and subscribed.count("/") == topic.count("/"):
                handler(topic, payload)


def observer(max_devices: int = 100, max_acks: int = 100) -> tuple[FleetObserver, RecordingLink]:
    link = RecordingLink()
    return FleetObserver(cast(ThreadLink, link), TOPICS, max_devices=max_devices, max_acks=max_acks), link


def ack(device: str, version: int) -> bytes:
    return json.dumps(
        {
            "device": device,
            "kind": "profile",
            "target": {"group": "pi5"},
            "version": version,
            "outcome": "applied",
            "at": 1.0,
        }
    ).encode()


def test_devices_beyond_the_limit_forget_the_least_recently_heard() -> None:
    fleet, link = observer(max_devices=3)
    for name in ("a", "b", "c"):
        link.deliver(TOPICS.device(name, "status"), b'{"state": "online"}')
    link.deliver(TOPICS.device("a", "status"), b'{"state": "online"}')  # heard again: now the newest
    link.deliver(TOPICS.device("d", "status"), b'{"state": "online"}')
    assert list(fleet.statuses) == ["c", "a", "d"]
    for index in range(1000):  # a flood of made-up device names stays within the limit
        link.deliver(TOPICS.device(f"spoof-{index}", "telemetry"), b"{}")
        link.deliver(TOPICS.device(f"spoof-{index}", "state"), b"{}")
    assert len(fleet.telemetry) == len(fleet.states) == 3
    assert fleet.forgotten > 0


def test_acks_and_acked_versions_are_bounded() -> None:
    fleet, link = observer(max_devices=10, max_acks=50)
    for version in range(1, MAX_ACKED_VERSIONS + 20):
        link.deliver(TOPICS.device("a", "ack"), ack("a", version))
    assert len(fleet.acks) == 50
    assert fleet.acks[-1].version == MAX_ACKED_VERSIONS + 19  # the newest are kept
    assert fleet.acks_for("profile", None, 1) == {}  # the oldest version was forgotten
    assert set(fleet.acks_for("profile", None, MAX_ACKED_VERSIONS + 19)) == {"a"}
    for index in range(100):
        link.deliver(TOPICS.device(f"d{index}", "ack"), ack(f"d{index}", 7_000))
    assert len(fleet.acks_for("profile", None, 7_000)) == 10


def test_a_limit_below_one_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="FleetObserver max_devices = 0: must be at least 1"):
        observer(max_devices=0)
