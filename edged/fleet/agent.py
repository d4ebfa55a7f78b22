"""FleetAgent: the daemon's member of the fleet, on one worker thread beside the MQTT link.

The link's thread only queues inbound messages and connect events (paho callbacks must not block); the worker
verifies, calls the daemon's applier (which may load a model for a minute), acks, and sends telemetry at the
running profile's interval. A reload of the daemon's config calls rebase() from another thread; one lock keeps
it and the worker's handling of a message from interleaving. Wiring, in the daemon's startup order:

    profile = last_good_profile(config, local) or effective_profile(config, local)  # before the engine
    agent = FleetAgent.from_config(config, link, applier, telemetry, local)  # before link.start()
    agent.start(); link.start() ... agent.stop(); link.stop()  # shutdown in reverse order
    agent.rebase(ProfileBase(new_config, new_local))  # on SIGHUP: the fleet layers on the reloaded base
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edged import __version__
from edged.comms import ThreadLink, Will
from edged.config.daemon import DaemonConfig
from edged.config.fleet import FleetSettings
from edged.config.profile import DeviceProfile
from edged.errors import ConfigError
from edged.fleet.device import FleetDevice
from edged.fleet.keys import KeyRing, load_public_key
from edged.fleet.outcome import Applier, ApplyOutcome, ChangeListener, ProfileBase
from edged.fleet.store import FleetStore
from edged.fleet.topics import FleetTopics

logger = logging.getLogger(__name__)

TelemetrySource = Callable[[], Mapping[str, Any]]
_CONNECTED = object()
_STOP = object()


def load_keyring(settings: FleetSettings, store: FleetStore) -> KeyRing:
    """The persisted ring (rotations survive restarts) plus the configured key unless it was revoked."""
    ring = store.keyring() or KeyRing()
    if settings.key is not None:
        ring.trust(load_public_key(settings.key))
    if not ring.keys:
        raise ConfigError(
            "fleet", [("fleet.key", str(settings.key), "no trusted key: it was revoked by a rotation")]
        )
    return ring


def presence_will(device_id: str, group: str | None, topics: FleetTopics) -> tuple[str, bytes]:
    """(topic, payload) of the Last Will: retained offline presence the broker publishes if the link dies."""
    will = {
        "device": device_id,
        "state": "offline",
        "since": None,
        "group": group,
        "cause": "connection lost",
    }
    return topics.device(device_id, "status"), _json(will)


def fleet_will(config: DaemonConfig) -> Will:
    """The Last Will to build the daemon's MqttLink with when the fleet is enabled."""
    topic, payload = presence_will(
        config.device_id, config.fleet.group, FleetTopics(config.broker.topic_prefix)
    )
    return Will(topic, payload, qos=1, retain=True)


def last_good_profile(config: DaemonConfig, local: Sequence[DeviceProfile] = ()) -> DeviceProfile | None:
    """The profile the fleet last applied on this device (merged as at apply time), or None if there is none.

    Reads only STATE_DIR/fleet: a device that boots offline runs its last good profile.
    """
    if not config.fleet.enabled:
        return None
    store = FleetStore(config.state_dir)
    device = FleetDevice(
        config.device_id,
        config.fleet,
        store,
        KeyRing(),
        ProfileBase(config, tuple(local)),
        applier=_refuse,
        publish=_discard,
    )
    return device.profile if device.layers else None


def _refuse(profile: DeviceProfile) -> ApplyOutcome:
    raise RuntimeError("replay only")


def _discard(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    return None


class FleetAgent:
    def __init__(
        self,
        device_id: str,
        settings: FleetSettings,
        state_dir: Path,
        link: ThreadLink,
        *,
        applier: Applier,
        telemetry: TelemetrySource,
        base: ProfileBase,
        topics: FleetTopics | None = None,
        clock: Callable[[], float] = time.time,
        on_change: ChangeListener | None = None,
    ) -> None:
        self.link = link
        self.topics = topics or FleetTopics()
        self._telemetry = telemetry
        self._clock = clock
        store = FleetStore(state_dir)
        self.device = FleetDevice(
            device_id,
            settings,
            store,
            load_keyring(settings, store),
            base,
            applier,
            link.publish,
            self.topics,
            clock,
            on_change,
        )
        # Held while a message is handled or the base changes: both merge and apply, and must not interleave.
        self._lock = threading.Lock()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=settings.queue_size)
        self._thread: threading.Thread | None = None
        self._recovered = False
        self._dropped = 0

    @classmethod
    def from_config(
        cls,
        config: DaemonConfig,
        link: ThreadLink,
        applier: Applier,
        telemetry: TelemetrySource,
        local: Sequence[DeviceProfile] = (),
        *,
        on_change: ChangeListener | None = None,
    ) -> FleetAgent:
        topics = FleetTopics(config.broker.topic_prefix)
        base = ProfileBase(config, tuple(local))
        return cls(
            config.device_id,
            config.fleet,
            config.state_dir,
            link,
            applier=applier,
            telemetry=telemetry,
            base=base,
            topics=topics,
            on_change=on_change,
        )

    @property
    def profile(self) -> DeviceProfile:
        """The running profile (config < local < fleet group < fleet device)."""
        return self.device.profile

    def rebase(self, base: ProfileBase) -> ApplyOutcome:
        """Apply the fleet layers on a new base (a reloaded config or local profile); later pushes merge on it.

        Blocks while a message is being handled (an apply may load a model); call it off the event loop."""
        with self._lock:
            return self.device.rebase(base)

    def start(self) -> None:
        """Set the Last Will, register subscriptions and start the worker (call before the link connects)."""
        will_topic, will_payload = presence_will(
            self.device.device_id, self.device.settings.group, self.topics
        )
        self.link.set_will(will_topic, will_payload, 1, True)
        for topic in self.device.inbound_topics():
            self.link.subscribe(topic, self._enqueue, 1)
        self._thread = threading.Thread(target=self._run, name="edged-fleet", daemon=True)
        self._thread.start()
        self.link.add_connect_listener(lambda: self._put(_CONNECTED))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish offline presence and stop the worker (an apply in progress finishes first)."""
        if self._thread is None:
            return
        self._queue.put(_STOP)  # blocks only while the queue is full, which the worker drains
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("fleet worker still busy after %.1f s; leaving it to finish", timeout_s)
        self._thread = None
        device_id = self.device.device_id
        offline = {
            "device": device_id,
            "state": "offline",
            "since": self._clock(),
            "group": self.device.settings.group,
            "cause": "stopped",
        }
        self.link.publish(self.topics.device(device_id, "status"), _json(offline), 1, True)

    # -- link thread -------------------------------------------------------------------------------

    def _enqueue(self, topic: str, payload: bytes) -> None:
        self._put((topic, payload))

    def _put(self, item: object) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped += 1
            logger.warning(
                "fleet queue full (%d dropped so far); a retained message comes again on reconnect",
                self._dropped,
            )

    # -- worker thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        last_telemetry = time.monotonic()
        while True:
            interval = self.device.profile.telemetry.interval_s
            wait = max(0.0, last_telemetry + interval - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            with self._lock:
                if item is _CONNECTED:
                    self._connected()
                elif isinstance(item, tuple):
                    self.device.receive(*item)
            if time.monotonic() >= last_telemetry + self.device.profile.telemetry.interval_s:
                self._send_telemetry()
                last_telemetry = time.monotonic()

    def _connected(self) -> None:
        device_id = self.device.device_id
        online = {
            "device": device_id,
            "state": "online",
            "since": self._clock(),
            "group": self.device.settings.group,
            "edged": __version__,
        }
        self.link.publish(self.topics.device(device_id, "status"), _json(online), 1, True)
        if not self._recovered:
            self._recovered = True
            self.device.recover_interrupted()
        self.device.publish_state()

    def _send_telemetry(self) -> None:
        try:
            data: Mapping[str, Any] = dict(self._telemetry())
        except Exception as exc:
            logger.exception("the telemetry source failed")
            data = {"error": f"{type(exc).__name__}: {exc}"}
        device = self.device
        report = {
            "device": device.device_id,
            "at": self._clock(),
            "profile": device.profile.name,
            "layers": {scope: layer.version for scope, layer in device.layers.items()},
            "data": data,
        }
        self.link.publish(self.topics.device(device.device_id, "telemetry"), _json(report), 0, False)


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), default=str).encode()
