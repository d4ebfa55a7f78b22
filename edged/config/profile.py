"""DeviceProfile: the per-device tuning a fleet manager pushes (or a local file gives).

A profile holds only sections that may differ between boards; every field has a default, so a profile file names
only what it changes. The effective profile is a deep merge, later wins, lists replaced whole:

    daemon config sections  <  local profile file  <  fleet group profile  <  fleet device profile
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from edged.config.base import StrictModel
from edged.config.budget import BudgetSettings
from edged.config.engine import EngineSettings
from edged.config.limits import LoadLimits
from edged.config.privacy import PrivacySettings
from edged.config.routing import RoutingSettings
from edged.config.telemetry import TelemetrySettings

PROFILE_SECTIONS = ("engine", "routing", "limits", "privacy", "budget", "telemetry")


class DeviceProfile(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")] = Field(
        default="default", description="Profile name shown in status and telemetry."
    )
    description: Annotated[str, Field(max_length=500)] = Field(
        default="", description="What the profile is for."
    )
    engine: EngineSettings = Field(default_factory=EngineSettings, description="Local model runtime.")
    routing: RoutingSettings = Field(
        default_factory=RoutingSettings, description="Local vs cloud thresholds."
    )
    limits: LoadLimits = Field(default_factory=LoadLimits, description="Device load limits for offload.")
    privacy: PrivacySettings = Field(default_factory=PrivacySettings, description="Data-class policy.")
    budget: BudgetSettings = Field(default_factory=BudgetSettings, description="Cloud budget.")
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings, description="Reporting.")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two raw documents: tables merge key by key, anything else (lists included) is replaced."""
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged
