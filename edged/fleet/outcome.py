"""What the daemon's applier answers the fleet, and the base fleet layers are merged onto.

Kept apart from edged.fleet.device so that the daemon's profile apply (edged.service.apply), which runs with or
without a fleet, does not load the fleet's signature checks (cryptography) when no fleet is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from edged.config.daemon import DaemonConfig
from edged.config.loader import effective_profile, parse_profile
from edged.config.profile import DeviceProfile

if TYPE_CHECKING:
    from edged.fleet.store import AppliedLayer


class ApplyResult(StrEnum):
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """What the daemon's applier did with a profile: applied it, or kept the old one and says why."""

    result: ApplyResult
    reason: str = ""

    @classmethod
    def applied(cls) -> ApplyOutcome:
        return cls(ApplyResult.APPLIED)

    @classmethod
    def rolled_back(cls, reason: str) -> ApplyOutcome:
        return cls(ApplyResult.ROLLED_BACK, reason)


Applier = Callable[[DeviceProfile], ApplyOutcome]
ChangeListener = Callable[[], None]  # called after the running profile or layers changed; must not block


@dataclass(frozen=True, slots=True)
class ProfileBase:
    """What fleet layers are merged onto: the daemon config's sections and the local profile files."""

    config: DaemonConfig
    local: tuple[DeviceProfile, ...] = ()

    def merge(self, layers: Mapping[str, AppliedLayer]) -> DeviceProfile:
        """The effective profile with the fleet layers (group, then device); raises ConfigError."""
        fleet = [parse_profile(layers[s].profile, f"{s} profile") for s in ("group", "device") if s in layers]
        return effective_profile(self.config, [*self.local, *fleet])
