"""A simulated fleet: many devices in one process, each running the real FleetDevice code without a model.

Each simulated device has its own state directory, key ring, version store and merge, so it verifies,
records durably, applies and acks exactly as a daemon does; only the applier is SimulatedApplier (no model)
and devices share a few MQTT connections (one ThreadLink, so one event loop thread, each) instead of one each.
A device's messages are handled on one worker thread (shard = device index % workers), as FleetAgent's single
worker would.

Used by tests (tests/test_fleet_simulation.py) and by bench/fleet_rollout.py.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edged.comms import ThreadLink
from edged.config.broker import BrokerSettings
from edged.config.daemon import DaemonConfig
from edged.config.engine import EngineSettings
from edged.config.fleet import FleetSettings
from edged.config.profile import DeviceProfile
from edged.fleet.agent import load_keyring
from edged.fleet.device import FleetDevice
from edged.fleet.outcome import ApplyOutcome, ProfileBase
from edged.fleet.store import FleetStore
from edged.fleet.topics import FleetTopics

logger = logging.getLogger(__name__)


@dataclass
class SimulatedApplier:
    """The daemon's applier without a model: records what it applied; `fail_models` names models whose load
    "fails" (the health check of a real swap), so the device must roll back and keep the old profile."""

    fail_models: set[str] = field(default_factory=set)
    applied: list[DeviceProfile] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, profile: DeviceProfile) -> ApplyOutcome:
        if profile.engine.model in self.fail_models:
            return ApplyOutcome.rolled_back(f"model {profile.engine.model!r} failed its health check")
        with self._lock:
            self.applied.append(profile)
        return ApplyOutcome.applied()

    @property
    def current(self) -> DeviceProfile | None:
        with self._lock:
            return self.applied[-1] if self.applied else None


class SimulatedFleet:
    """`count` devices PREFIX-00000.. in `group`, sharing `connections` MQTT links and `workers` threads."""

    def __init__(
        self,
        url: str,
        root: Path,
        key_file: Path,
        *,
        count: int,
        group: str,
        connections: int = 4,
        workers: int = 4,
        prefix: str = "sim",
        topics: FleetTopics | None = None,
        broker: BrokerSettings | None = None,
        applier_factory: Callable[[], SimulatedApplier] = SimulatedApplier,
    ) -> None:
        self.topics = topics or FleetTopics()
        self.settings = FleetSettings(group=group, key=key_file)
        base = ProfileBase(DaemonConfig(state_dir=root, engine=EngineSettings(threads=1)))
        # Many devices share each connection: far more in flight and queued than one daemon's link.
        settings = (broker or BrokerSettings()).model_copy(
            update={"url": url, "max_inflight_messages": 1000, "max_queued_messages": 1_000_000}
        )
        self.appliers = [applier_factory() for _ in range(count)]
        self.links = [ThreadLink.own(settings, f"{prefix}-link-{k}") for k in range(min(connections, count))]
        self.devices = [self._device(f"{prefix}-{i:05d}", root, base, i) for i in range(count)]
        self._queues: list[queue.Queue[tuple[int, str | None, bytes] | None]] = [
            queue.Queue() for _ in range(min(workers, count))
        ]
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"sim-fleet-{n}", daemon=True)
            for n, q in enumerate(self._queues)
        ]

    def _device(self, device_id: str, root: Path, base: ProfileBase, index: int) -> FleetDevice:
        store = FleetStore(root / device_id)
        link = self.links[index % len(self.links)]
        return FleetDevice(
            device_id,
            self.settings,
            store,
            load_keyring(self.settings, store),
            base,
            self.appliers[index],
            link.publish,
            self.topics,
        )

    def start(self, connect_timeout_s: float = 30.0) -> None:
        for thread in self._threads:
            thread.start()
        for k, link in enumerate(self.links):
            members = list(range(k, len(self.devices), len(self.links)))
            self._subscribe(link, members)
            link.add_connect_listener(lambda members=members: self._online(members))  # type: ignore[misc]
            link.start()
        for link in self.links:
            link.wait_connected(connect_timeout_s)

    def _subscribe(self, link: ThreadLink, members: Sequence[int]) -> None:
        by_topic: dict[str, list[int]] = {}
        for index in members:
            for topic in self.devices[index].inbound_topics():
                by_topic.setdefault(topic, []).append(index)
        for topic, indexes in by_topic.items():
            link.subscribe(topic, lambda t, p, indexes=indexes: self._dispatch(indexes, t, p))  # type: ignore[misc]

    def _dispatch(self, indexes: Sequence[int], topic: str, payload: bytes) -> None:
        # On the link's loop thread: only queue (each device's own shard keeps its messages in order).
        for index in indexes:
            self._queues[index % len(self._queues)].put((index, topic, payload))

    def _online(self, members: Sequence[int]) -> None:
        for index in members:
            self._queues[index % len(self._queues)].put((index, None, b""))

    def _work(self, inbox: queue.Queue[tuple[int, str | None, bytes] | None]) -> None:
        while (item := inbox.get()) is not None:
            index, topic, payload = item
            device = self.devices[index]
            if topic is None:
                status = {"device": device.device_id, "state": "online", "since": device.clock()}
                topic_status = self.topics.device(device.device_id, "status")
                device.publish(topic_status, json.dumps(status).encode(), 1, True)
                device.publish_state()
            else:
                device.receive(topic, payload)

    def stop(self) -> None:
        for inbox in self._queues:
            inbox.put(None)
        for thread in self._threads:
            thread.join(10)
        for link in self.links:
            link.stop()
