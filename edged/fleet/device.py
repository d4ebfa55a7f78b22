"""FleetDevice: what one device does with fleet messages, independent of threads and of the MQTT client.

For a profile message: verify (edged.fleet.verify), validate the layer and the merged profile, durably record
the version, call the daemon's applier, persist the layer when it applied, then ack and publish the state. The
merged profile is, later wins:

    daemon config sections  <  local profile files  <  fleet group profile  <  fleet device profile

A key announcement, once verified, replaces the key ring; messages refused for an unknown key are then tried
again. When the daemon reloads its config and local profile, rebase() puts the same fleet layers on the new base.
Not thread-safe: one thread at a time calls receive() and rebase() (FleetAgent serialises them; a SimulatedFleet
shard has one thread).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edged.config.fleet import FleetSettings
from edged.config.profile import DeviceProfile
from edged.errors import ConfigError, Rejected, RejectReason
from edged.fleet.envelope import Envelope, Target
from edged.fleet.keys import KeyRing
from edged.fleet.outcome import Applier, ApplyOutcome, ApplyResult, ChangeListener, ProfileBase
from edged.fleet.store import AppliedLayer, FleetStore, StreamState
from edged.fleet.topics import FleetTopics
from edged.fleet.verify import digest, verify

logger = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], None]  # (topic, payload, qos, retain); must not block
Clock = Callable[[], float]
REMEMBERED_REJECTIONS = 64


class Outcome(StrEnum):
    """The `outcome` of an ack."""

    APPLIED = "applied"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"


@dataclass
class FleetDevice:
    device_id: str
    settings: FleetSettings
    store: FleetStore
    ring: KeyRing
    base: ProfileBase
    applier: Applier
    publish: Publish
    topics: FleetTopics = field(default_factory=FleetTopics)
    clock: Clock = time.time
    on_change: ChangeListener | None = None
    layers: dict[str, AppliedLayer] = field(init=False)
    profile: DeviceProfile = field(init=False)
    _last: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)
    _acked_rejections: OrderedDict[tuple[str, str], None] = field(init=False, default_factory=OrderedDict)
    _unknown_key: dict[str, bytes] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.layers = {s: layer for s, layer in self.store.layers().items() if layer.target in self.targets()}
        try:
            self.profile = self.base.merge(self.layers)
        except ConfigError as exc:
            logger.error("the persisted fleet profile no longer validates, running without it: %s", exc)
            self.layers = {}
            self.profile = self.base.merge({})

    def targets(self) -> list[Target]:
        """The targets this device takes messages for: its group (if any), then itself."""
        group = [Target("group", self.settings.group)] if self.settings.group else []
        return [*group, Target("device", self.device_id)]

    def inbound_topics(self) -> list[str]:
        """Topics to subscribe on every connect, in this order: the device's own retained state first (the
        broker sends retained messages in subscription order, so a device that lost its state learns the
        versions it ran before any profile arrives), then key announcements (a new key is known in time),
        then profiles."""
        targets = self.targets()
        keys = [self.topics.inbound("keys", t) for t in targets]
        profiles = [
            self.topics.inbound("profile", t)
            for t in targets
            if t.scope == "group" or self.settings.device_profiles
        ]
        return [self.topics.device(self.device_id, "state"), *keys, *profiles]

    def receive(self, topic: str, payload: bytes) -> None:
        """Handle one inbound message; never raises (a bad message must not stop the device)."""
        if topic == self.topics.device(self.device_id, "state"):
            self._learn_versions(payload)
            return
        parsed = self.topics.parse(topic)
        if parsed is None or parsed[0] not in self.targets() or parsed[1] not in ("profile", "keys"):
            logger.warning("ignoring a message on unexpected topic %s", topic)
            return
        target, kind = parsed
        self._unknown_key.pop(topic, None)  # only the latest message of a topic is retried after a rotation
        if not payload:  # the retained message was cleared: no document, nothing to apply or to reject
            logger.info("the retained %s on %s was cleared; keeping what runs", kind, topic)
            return
        try:
            if kind == "keys":
                self._receive_keys(topic, target, payload)
            else:
                self._receive_profile(topic, target, payload)
        except Rejected as rejected:
            self._rejected(topic, target, kind, payload, rejected)
        except Exception:
            logger.exception("fleet message on %s could not be handled", topic)

    # -- profiles ----------------------------------------------------------------------------------

    def _receive_profile(self, topic: str, target: Target, payload: bytes) -> None:
        envelope = self._verified(payload, "profile", target)
        if envelope is None:
            return
        layer = AppliedLayer(
            target.scope,
            target.name,
            envelope.version,
            envelope.key_id,
            envelope.issued_at,
            self.clock(),
            dict(envelope.body),
        )
        layers = {**self.layers, target.scope: layer}
        try:
            candidate = self.base.merge(layers)
        except ConfigError as exc:
            raise Rejected(RejectReason.INVALID_PROFILE, str(exc), envelope.version) from None
        fingerprint = digest(envelope)
        self.store.record(envelope.stream, envelope.version, fingerprint, StreamState.APPLYING)
        outcome = self._apply(candidate)
        if outcome.result is ApplyResult.APPLIED:
            self.store.save_layers(layers)
            self.store.record(envelope.stream, envelope.version, fingerprint, StreamState.APPLIED)
            self.layers, self.profile = layers, candidate
            self._changed()  # before the ack: whoever sees the ack sees the new version reported
            logger.info(
                "applied fleet profile %s version %d for %s", candidate.name, envelope.version, target
            )
            self._report(envelope.stream, target, "profile", envelope.version, Outcome.APPLIED)
        else:
            self.store.record(envelope.stream, envelope.version, fingerprint, StreamState.ROLLED_BACK)
            logger.warning("fleet profile version %d rolled back: %s", envelope.version, outcome.reason)
            self._report(
                envelope.stream,
                target,
                "profile",
                envelope.version,
                Outcome.ROLLED_BACK,
                reason="apply_failed",
                detail=outcome.reason,
            )

    def rebase(self, base: ProfileBase) -> ApplyOutcome:
        """Merge the fleet layers onto a new base (the daemon reloaded its config or local profile) and apply the
        result. Nothing changes unless it applies: a base the layers do not validate on is rolled back too."""
        try:
            candidate = base.merge(self.layers)
        except ConfigError as exc:
            return ApplyOutcome.rolled_back(f"the fleet profile does not validate on the new base: {exc}")
        outcome = self._apply(candidate)
        if outcome.result is ApplyResult.APPLIED:
            self.base, self.profile = base, candidate
            self._changed()
            self.publish_state()  # the profile's name may have changed
        return outcome

    def _changed(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:  # a listener (a gauge) must not cost the ack of a profile that did apply
            logger.exception("the profile change listener raised")

    def _apply(self, candidate: DeviceProfile) -> ApplyOutcome:
        try:
            outcome = self.applier(candidate)
        except Exception as exc:
            logger.exception("the profile applier raised")
            return ApplyOutcome.rolled_back(f"applier raised {type(exc).__name__}: {exc}")
        if not isinstance(outcome, ApplyOutcome):
            return ApplyOutcome.rolled_back(f"applier returned {outcome!r}, not an ApplyOutcome")
        return outcome

    def recover_interrupted(self) -> None:
        """Report versions whose apply never finished (the daemon stopped mid-apply) as rolled back."""
        for stream, record in self.store.streams().items():
            if record.state is not StreamState.APPLYING:
                continue
            kind, scope, name = stream.split(":", 2)
            self.store.record(stream, record.version, record.digest, StreamState.ROLLED_BACK)
            logger.warning(
                "fleet %s version %d was interrupted during apply; kept the old one", stream, record.version
            )
            self._report(
                stream,
                Target(scope, name),
                kind,
                record.version,
                Outcome.ROLLED_BACK,
                reason="interrupted",
                detail="the daemon stopped before the apply finished; the previous profile is running",
            )

    def _learn_versions(self, payload: bytes) -> None:
        """The device's own retained state (its previous life's, or an echo of what it just published): for a
        stream this device has no record of, the version it reported becomes a floor (StreamState.LEARNED),
        so a device that lost its state directory never applies a retained message older than what it ran
        (issue 17: 21). A stream with a record keeps it: the store, not the broker, is the device's memory.
        Whoever may publish on the state topic (the ACL's business) can at most make a device without state
        refuse older messages: every message it applies still needs a trusted signature and a higher
        version."""
        streams = self._reported_streams(payload)
        for target in self.targets():
            for kind in ("keys", "profile"):
                stream = target.stream(kind)
                version = streams.get(stream)
                if version is None or self.store.stream(stream) is not None:
                    continue
                self.store.record(stream, version, "", StreamState.LEARNED)
                logger.warning(
                    "no fleet state for %s: its retained state reports version %d; nothing older is accepted",
                    stream,
                    version,
                )

    def _reported_streams(self, payload: bytes) -> dict[str, int]:
        """stream -> version from a retained state document; {} for anything else (logged)."""
        if not payload or len(payload) > self.settings.max_envelope_bytes:
            return {}
        try:
            document = json.loads(payload)
        except (ValueError, RecursionError):
            logger.warning("the retained state of %s is not JSON; ignored", self.device_id)
            return {}
        streams = document.get("streams") if isinstance(document, dict) else None
        if not isinstance(streams, dict):
            return {}
        reported: dict[str, int] = {}
        for stream, record in streams.items():
            version = record.get("version") if isinstance(record, dict) else None
            if isinstance(version, int) and not isinstance(version, bool) and version > 0:
                reported[str(stream)] = version
        return reported

    # -- keys --------------------------------------------------------------------------------------

    def _receive_keys(self, topic: str, target: Target, payload: bytes) -> None:
        if not self.settings.key_rotation:
            raise Rejected(RejectReason.ROTATION_DISABLED, "fleet.key_rotation is false on this device")
        envelope = self._verified(payload, "keys", target)
        if envelope is None:
            return
        ring = self.ring.announced(envelope)
        # The ring is saved before the version: a crash between the two redelivers an idempotent announcement.
        self.store.save_keyring(ring)
        self.store.record(envelope.stream, envelope.version, digest(envelope), StreamState.APPLIED)
        self.ring = ring
        logger.info(
            "fleet key ring now trusts %s (announcement version %d)", sorted(ring.keys), envelope.version
        )
        self._report(envelope.stream, target, "keys", envelope.version, Outcome.APPLIED)
        for retry_topic, retry_payload in list(self._unknown_key.items()):
            del self._unknown_key[retry_topic]
            self.receive(retry_topic, retry_payload)

    # -- shared ------------------------------------------------------------------------------------

    def _verified(self, payload: bytes, kind: str, target: Target) -> Envelope | None:
        stream = target.stream(kind)
        return verify(
            payload,
            kind=kind,
            expected=target,
            ring=self.ring,
            last=self.store.stream(stream),
            now=self.clock(),
            max_bytes=self.settings.max_envelope_bytes,
            max_skew_s=self.settings.max_clock_skew_s,
        )

    def _rejected(self, topic: str, target: Target, kind: str, payload: bytes, rejected: Rejected) -> None:
        if rejected.reason is RejectReason.UNKNOWN_KEY:
            self._unknown_key[topic] = payload
        key = (topic, hashlib.sha256(payload).hexdigest())
        if key in self._acked_rejections:
            return  # the same retained message again (a reconnect): acked already
        self._acked_rejections[key] = None
        while len(self._acked_rejections) > REMEMBERED_REJECTIONS:
            self._acked_rejections.popitem(last=False)
        logger.warning("rejected fleet %s for %s: %s", kind, target, rejected)
        stream = target.stream(kind)
        self._report(
            stream,
            target,
            kind,
            rejected.version,
            Outcome.REJECTED,
            reason=rejected.reason,
            detail=rejected.detail,
        )

    def _report(
        self,
        stream: str,
        target: Target,
        kind: str,
        version: int | None,
        outcome: Outcome,
        *,
        reason: str | None = None,
        detail: str = "",
    ) -> None:
        ack = {
            "device": self.device_id,
            "kind": kind,
            "target": target.to_json(),
            "version": version,
            "outcome": outcome.value,
            "reason": reason,
            "detail": detail,
            "at": self.clock(),
        }
        self._last[stream] = {"version": version, "outcome": outcome.value, "reason": reason}
        self.publish(self.topics.device(self.device_id, "ack"), _json(ack), 1, False)
        self.publish_state()

    def state_document(self) -> dict[str, Any]:
        """The retained state: what runs, each stream's highest accepted version, and the last outcomes."""
        return {
            "device": self.device_id,
            "group": self.settings.group,
            "profile": self.profile.name,
            "layers": {
                s: {"version": layer.version, "applied_at": layer.applied_at}
                for s, layer in self.layers.items()
            },
            "streams": {
                stream: {"version": record.version, "state": record.state.value}
                for stream, record in self.store.streams().items()
            },
            "last": dict(self._last),
            "at": self.clock(),
        }

    def publish_state(self) -> None:
        self.publish(self.topics.device(self.device_id, "state"), _json(self.state_document()), 1, True)


def _json(document: Mapping[str, Any] | Sequence[Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), default=str).encode()
