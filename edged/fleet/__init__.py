"""Fleet management: signed device profiles pushed over MQTT, applied atomically, reported back.

The daemon calls `last_good_profile` before its engine starts, runs one `FleetAgent` beside its MQTT link and, on
SIGHUP, `FleetAgent.rebase` with the re-read config; the cloud side uses the `edged-fleet` tool (edged.fleet.tool).
See docs/fleet.md.
"""

from edged.errors import Rejected, RejectReason
from edged.fleet.agent import FleetAgent, TelemetrySource, fleet_will, last_good_profile
from edged.fleet.device import (
    Applier,
    ApplyOutcome,
    ApplyResult,
    ChangeListener,
    FleetDevice,
    ProfileBase,
)
from edged.fleet.envelope import Target
from edged.fleet.keys import KeyRing, Signer
from edged.fleet.topics import FleetTopics

__all__ = [
    "Applier",
    "ApplyOutcome",
    "ApplyResult",
    "ChangeListener",
    "FleetAgent",
    "FleetDevice",
    "FleetTopics",
    "KeyRing",
    "ProfileBase",
    "RejectReason",
    "Rejected",
    "Signer",
    "Target",
    "TelemetrySource",
    "fleet_will",
    "last_good_profile",
]
