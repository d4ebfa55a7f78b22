"""Fleet management: signed device profiles pushed over MQTT, applied atomically, reported back.

The daemon calls `last_good_profile` before its engine starts, runs one `FleetAgent` beside its MQTT link and, on
SIGHUP, `FleetAgent.rebase` with the re-read config; the cloud side uses the `edged-fleet` tool (edged.fleet.tool).
See docs/fleet.md.
"""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.fleet.agent import FleetAgent as FleetAgent
    from edged.fleet.agent import TelemetrySource as TelemetrySource
    from edged.fleet.agent import fleet_will as fleet_will
    from edged.fleet.agent import last_good_profile as last_good_profile
    from edged.fleet.device import FleetDevice as FleetDevice
    from edged.fleet.envelope import Target as Target
    from edged.fleet.keys import KeyRing as KeyRing
    from edged.fleet.keys import Signer as Signer
    from edged.fleet.keys import load_public_key as load_public_key
    from edged.fleet.outcome import Applier as Applier
    from edged.fleet.outcome import ApplyOutcome as ApplyOutcome
    from edged.fleet.outcome import ApplyResult as ApplyResult
    from edged.fleet.outcome import ChangeListener as ChangeListener
    from edged.fleet.outcome import ProfileBase as ProfileBase
    from edged.fleet.topics import FleetTopics as FleetTopics

EXPORTS = {
    "Applier": "outcome",
    "ApplyOutcome": "outcome",
    "ApplyResult": "outcome",
    "ChangeListener": "outcome",
    "fleet_will": "agent",
    "FleetAgent": "agent",
    "FleetDevice": "device",
    "FleetTopics": "topics",
    "KeyRing": "keys",
    "last_good_profile": "agent",
    "load_public_key": "keys",
    "ProfileBase": "outcome",
    "Signer": "keys",
    "Target": "envelope",
    "TelemetrySource": "agent",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
