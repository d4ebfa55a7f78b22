"""The fleet's MQTT topics, under the broker's topic prefix (default edged/v1).

PREFIX/fleet/group/GROUP/profile     retained  signed group profile           (tool -> devices)
PREFIX/fleet/group/GROUP/keys        retained  signed key announcement        (tool -> devices)
PREFIX/fleet/device/DEVICE/profile   retained  signed device profile          (tool -> device)
PREFIX/fleet/device/DEVICE/keys      retained  signed key announcement        (tool -> device)
PREFIX/fleet/device/DEVICE/status    retained  presence: online, or offline through the Last Will
PREFIX/fleet/device/DEVICE/state     retained  applied versions and the last outcome per stream
PREFIX/fleet/device/DEVICE/ack       QoS 1     one ack per message version: applied, rejected, rolled_back
PREFIX/fleet/device/DEVICE/telemetry QoS 0     periodic telemetry at the profile's interval
"""

from __future__ import annotations

from dataclasses import dataclass

from edged.fleet.envelope import Target

DEVICE_LEAVES = ("status", "state", "ack", "telemetry")


@dataclass(frozen=True, slots=True)
class FleetTopics:
    prefix: str = "edged/v1"

    def inbound(self, kind: str, target: Target) -> str:
        """Where messages of `kind` ("profile" or "keys") for `target` are published (retained)."""
        return f"{self.prefix}/fleet/{target.scope}/{target.name}/{kind}"

    def device(self, device_id: str, leaf: str) -> str:
        """A topic the device publishes on: one of DEVICE_LEAVES."""
        return f"{self.prefix}/fleet/device/{device_id}/{leaf}"

    def every_device(self, leaf: str) -> str:
        return f"{self.prefix}/fleet/device/+/{leaf}"

    def every_target(self, scope: str, kind: str) -> str:
        return f"{self.prefix}/fleet/{scope}/+/{kind}"

    def parse(self, topic: str) -> tuple[Target, str] | None:
        """(target, leaf) of a fleet topic, or None for any other topic."""
        head = f"{self.prefix}/fleet/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/")
        if len(parts) != 3 or parts[0] not in ("group", "device"):
            return None
        return Target(parts[0], parts[1]), parts[2]
