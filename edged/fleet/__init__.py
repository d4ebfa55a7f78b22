"""Fleet management: signed device profiles pushed over MQTT, applied atomically, reported back.

The daemon calls `last_good_profile` before its engine starts and runs one `FleetAgent` beside its MQTT link;
the cloud side uses the `edged-fleet` tool (edged.fleet.tool). See docs/fleet.md.
"""

from edged.fleet.agent import FleetAgent, TelemetrySource, last_good_profile
from edged.fleet.device import Applier, ApplyOutcome, ApplyResult, FleetDevice, ProfileBase
from edged.fleet.envelope import Rejected, RejectReason, Target
from edged.fleet.keys import KeyRing, Signer
from edged.fleet.link import FleetLink
from edged.fleet.topics import FleetTopics

__all__ = [
    "Applier",
    "ApplyOutcome",
    "ApplyResult",
    "FleetAgent",
    "FleetDevice",
    "FleetLink",
    "FleetTopics",
    "KeyRing",
    "ProfileBase",
    "RejectReason",
    "Rejected",
    "Signer",
    "Target",
    "TelemetrySource",
    "last_good_profile",
]
