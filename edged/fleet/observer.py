"""FleetObserver: the cloud side's view of the fleet over one MQTT link (acks, presence, state, envelopes).

Handlers run on the link's event loop thread and only record under a lock; callers wait on a condition from
their own thread.
`sync()` makes "every retained message has arrived" observable: it publishes a marker to a topic this observer
subscribed last, and the broker delivers to one client in order, so the marker comes after the retained ones.

What it keeps is bounded, whatever the fleet (or anyone who may publish on its topics) sends (issue 17: 8):
at most `max_devices` devices in each of states, statuses and telemetry (the device heard from least recently
is forgotten first), `max_devices` retained envelopes, the newest `max_acks` acks, and acks of the newest
MAX_ACKED_VERSIONS (kind, version) pairs for acks_for().
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from edged.comms import ThreadLink
from edged.errors import CloudUnavailable, Rejected
from edged.fleet.envelope import Envelope, Target, decode
from edged.fleet.rollout import FleetStatus, fleet_status
from edged.fleet.topics import FleetTopics

logger = logging.getLogger(__name__)

ANY_SIZE = 16 * 1024 * 1024  # the observer shows envelopes, it does not enforce a device's limit
DEFAULT_MAX_DEVICES = 100_000  # a fleet's devices; ~1 KB of state each: ~100 MB at the limit
DEFAULT_MAX_ACKS = 100_000
MAX_ACKED_VERSIONS = 256  # rollouts an observer tracks acks for at once; the oldest is forgotten first


@dataclass(frozen=True, slots=True)
class Ack:
    device: str
    kind: str
    target: Target
    version: int | None
    outcome: str
    reason: str | None
    detail: str
    at: float

    @classmethod
    def parse(cls, document: dict[str, Any]) -> Ack:
        ((scope, name),) = document["target"].items()
        return cls(
            str(document["device"]),
            str(document["kind"]),
            Target(scope, name),
            document.get("version"),
            str(document["outcome"]),
            document.get("reason"),
            str(document.get("detail", "")),
            float(document["at"]),
        )


Listener = Callable[[str, str, Any], None]  # (leaf, device or topic, parsed document)


class FleetObserver:
    def __init__(
        self,
        link: ThreadLink,
        topics: FleetTopics,
        *,
        envelopes: bool = True,
        max_devices: int = DEFAULT_MAX_DEVICES,
        max_acks: int = DEFAULT_MAX_ACKS,
    ) -> None:
        for name, value in (("max_devices", max_devices), ("max_acks", max_acks)):
            if value < 1:
                raise ValueError(f"FleetObserver {name} = {value}: must be at least 1")
        self.link = link
        self.topics = topics
        self.max_devices = max_devices
        self.max_acks = max_acks
        self.forgotten = 0  # devices, envelopes and acks dropped to stay within the limits
        self.acks: list[Ack] = []
        self._by_version: dict[
            tuple[str, int | None], dict[str, Ack]
        ] = {}  # (kind, version) -> device -> ack
        self.states: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.telemetry: dict[str, dict[str, Any]] = {}
        self.envelopes: dict[str, Envelope] = {}
        self._listeners: list[Listener] = []
        self._changed = threading.Condition()
        for leaf in ("ack", "status", "state", "telemetry"):
            link.subscribe(topics.every_device(leaf), self._on_device_message, 1)
        if envelopes:
            for scope in ("group", "device"):
                for kind in ("keys", "profile"):
                    link.subscribe(topics.every_target(scope, kind), self._on_envelope, 1)
        self._marker_topic = f"{topics.prefix}/fleet/observer/{uuid.uuid4().hex}"
        self._markers: set[str] = set()
        self._expected: set[str] = set()
        link.subscribe(self._marker_topic, self._on_marker, 1)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- the link's loop thread -------------------------------------------------------------------------------

    def _on_device_message(self, topic: str, payload: bytes) -> None:
        parsed = self.topics.parse(topic)
        if parsed is None:
            return
        target, leaf = parsed
        try:
            document = json.loads(payload) if payload else None
        except ValueError:
            logger.warning("unreadable %s from %s", leaf, target.name)
            return
        with self._changed:
            self._record(leaf, target.name, document)
            self._changed.notify_all()
        for listener in self._listeners:
            listener(leaf, target.name, document)

    def _record(self, leaf: str, device: str, document: Any) -> None:
        if leaf == "ack" and isinstance(document, dict):
            try:
                ack = Ack.parse(document)
            except (KeyError, TypeError, ValueError, AttributeError):
                logger.warning("malformed ack from %s", device)
                return
            self._record_ack(ack)
            return
        table = {"status": self.statuses, "state": self.states, "telemetry": self.telemetry}[leaf]
        table.pop(device, None)  # re-inserted last: a table's order is least recently heard first
        if isinstance(document, dict):
            table[device] = document
            self._bound(table, self.max_devices, "devices")
        # else: an empty retained message clears a device

    def _record_ack(self, ack: Ack) -> None:
        self.acks.append(ack)
        if len(self.acks) > self.max_acks:
            del self.acks[0]
            self.forgotten += 1
        key = (ack.kind, ack.version)
        devices = self._by_version.pop(key, {})
        self._by_version[key] = devices  # newest version last
        devices[f"{ack.device} {ack.target}"] = ack
        self._bound(devices, self.max_devices, "acking devices")
        self._bound(self._by_version, MAX_ACKED_VERSIONS, "acked versions")

    def _bound(self, table: dict[Any, Any], limit: int, what: str) -> None:
        """Forget the oldest entries of `table` (insertion order) beyond `limit`."""
        while len(table) > limit:
            oldest = next(iter(table))
            del table[oldest]
            self.forgotten += 1
            if self.forgotten == 1:
                logger.warning("fleet observer keeps at most %d %s: forgetting %s", limit, what, oldest)

    def _on_envelope(self, topic: str, payload: bytes) -> None:
        with self._changed:
            if not payload:
                self.envelopes.pop(topic, None)
            else:
                try:
                    envelope = decode(payload, ANY_SIZE)
                except Rejected as exc:
                    logger.warning("retained message on %s is not an envelope: %s", topic, exc)
                else:
                    self.envelopes.pop(topic, None)
                    self.envelopes[topic] = envelope
                    self._bound(self.envelopes, self.max_devices, "envelopes")
            self._changed.notify_all()
        for listener in self._listeners:
            listener("envelope", topic, self.envelopes.get(topic))

    def _on_marker(self, topic: str, payload: bytes) -> None:
        with self._changed:
            marker = payload.decode(errors="replace")
            if marker in self._expected:  # only markers a sync() waits for: nothing else is kept
                self._markers.add(marker)
                self._changed.notify_all()

    # -- caller thread -----------------------------------------------------------------------------

    def wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until predicate() (evaluated under the observer's lock) holds; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def sync(self, timeout_s: float = 10.0) -> None:
        """Return once every retained message on the subscribed topics has been received."""
        self.link.wait_connected(timeout_s)
        marker = uuid.uuid4().hex
        with self._changed:
            self._expected.add(marker)
        self.link.publish(self._marker_topic, marker.encode(), 1, False)
        try:
            if not self.wait(lambda: marker in self._markers, timeout_s):
                raise CloudUnavailable(f"the broker did not echo a sync marker within {timeout_s:g} s")
        finally:
            with self._changed:
                self._expected.discard(marker)  # a marker echoed late is not kept
                self._markers.discard(marker)

    def acks_for(self, kind: str, target: Target | None, version: int) -> dict[str, Ack]:
        """The latest ack per device for this message (target None: any target)."""
        with self._changed:
            acks = self._by_version.get((kind, version), {}).values()
            return {ack.device: ack for ack in acks if target is None or ack.target == target}

    def wait_acks(
        self, kind: str, target: Target | None, version: int, devices: Iterable[str] | int, timeout_s: float
    ) -> dict[str, Ack]:
        """Wait for acks of `version` from the named devices (or from that many devices)."""
        expected = devices if isinstance(devices, int) else set(devices)

        def complete() -> bool:
            # runs after every message while a rollout is acked: the cheap count first
            needed = expected if isinstance(expected, int) else len(expected)
            if len(self._by_version.get((kind, version), {})) < needed:
                return False
            seen = self.acks_for(kind, target, version)
            return len(seen) >= expected if isinstance(expected, int) else expected <= set(seen)

        self.wait(complete, timeout_s)
        return self.acks_for(kind, target, version)

    def group_members(self, group: str) -> set[str]:
        """Devices whose retained state says they are in `group`."""
        with self._changed:
            return {device for device, state in self.states.items() if state.get("group") == group}

    def status(self, group: str | None = None) -> FleetStatus:
        with self._changed:
            return fleet_status(dict(self.states), dict(self.statuses), list(self.envelopes.values()), group)

    def highest_version(self, kind: str, target: Target) -> int:
        """The highest `kind` version for `target` seen on its topic or reported by any device (0 if none)."""
        stream = target.stream(kind)
        with self._changed:
            versions = [e.version for e in self.envelopes.values() if e.target == target and e.kind == kind]
            for state in self.states.values():
                record = state.get("streams", {}).get(stream)
                if isinstance(record, dict) and isinstance(record.get("version"), int):
                    versions.append(record["version"])
        return max(versions, default=0)
