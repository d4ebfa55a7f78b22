"""DaemonConfig: the operator's config file for one device (TOML, usually /etc/edged/edged.toml)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from edged.config.api import ApiSettings
from edged.config.base import KeyRuleError, StrictModel
from edged.config.broker import BrokerSettings
from edged.config.budget import BudgetSettings
from edged.config.engine import EngineSettings
from edged.config.escalation import EscalationSettings
from edged.config.fleet import FleetSettings
from edged.config.http import HttpSettings
from edged.config.limits import LoadLimits
from edged.config.metrics import MetricsSettings
from edged.config.paths import default_state_dir
from edged.config.privacy import PrivacySettings
from edged.config.profile import PROFILE_SECTIONS
from edged.config.routing import RoutingSettings
from edged.config.telemetry import TelemetrySettings

DEVICE_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
# MQTT user names the shipped broker ACL (cloud_bridge/deploy/edged.acl) gives rights of their own in `user`
# sections: a device logging in as one would get them (`bridge`: the cloud_bridge workers' pool). Compared
# ignoring case; cloud_bridge/deploy/make-passwords refuses the same names.
RESERVED_DEVICE_IDS = ("bridge",)


def reserved_name(value: str) -> str | None:
    """The reserved name `value` matches (ignoring case), or None."""
    lowered = value.lower()
    return lowered if lowered in RESERVED_DEVICE_IDS else None


def default_device_id() -> str:
    """The hostname, reduced to characters that are safe in MQTT topics and ACL patterns (a host named like a
    reserved broker user gets `-edged` appended)."""
    cleaned = re.sub(r"[^A-Za-z0-9_\-]", "-", socket.gethostname())[:64] or "edged"
    return f"{cleaned}-edged" if reserved_name(cleaned) else cleaned


class DaemonConfig(StrictModel):
    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)] = Field(
        default_factory=default_device_id,
        description="This device's id in topics, status and audit records (and its MQTT user name with the "
        "shipped broker ACL); not a reserved broker user: " + ", ".join(RESERVED_DEVICE_IDS) + ".",
    )
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Where edged keeps durable state (applied profile, audit log).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level (prompt and answer text is never logged at INFO or above)."
    )
    models_dir: Path | None = Field(
        default=None, description="Directory of model manifests (default: the models/ shipped with edged)."
    )
    profile: Path | None = Field(default=None, description="A local device profile file (TOML).")
    api: ApiSettings = Field(default_factory=ApiSettings, description="Local gRPC listeners.")
    http: HttpSettings = Field(
        default_factory=HttpSettings, description="OpenAI-compatible HTTP API (off by default)."
    )
    broker: BrokerSettings = Field(default_factory=BrokerSettings, description="MQTT link.")
    escalation: EscalationSettings = Field(
        default_factory=EscalationSettings, description="Handing requests to cloud_bridge workers."
    )
    fleet: FleetSettings = Field(default_factory=FleetSettings, description="Fleet membership.")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="Prometheus endpoint.")
    # Defaults for the profile's sections; a profile overrides them key by key.
    engine: EngineSettings = Field(default_factory=EngineSettings, description="Local model runtime.")
    routing: RoutingSettings = Field(
        default_factory=RoutingSettings, description="Local vs cloud thresholds."
    )
    limits: LoadLimits = Field(default_factory=LoadLimits, description="Device load limits for offload.")
    privacy: PrivacySettings = Field(default_factory=PrivacySettings, description="Data-class policy.")
    budget: BudgetSettings = Field(default_factory=BudgetSettings, description="Cloud budget.")
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings, description="Reporting.")

    @field_validator("device_id")
    @classmethod
    def _device_id_not_reserved(cls, value: str) -> str:
        if name := reserved_name(value):
            raise ValueError(
                f"{name!r} is reserved: the broker ACL gives user {name!r} the cloud_bridge workers' rights; "
                "choose another device id"
            )
        return value

    @model_validator(mode="after")
    def _username_not_reserved(self) -> DaemonConfig:
        username = self.broker.username
        if username is not None and (name := reserved_name(username)):
            raise KeyRuleError(
                "broker.username",
                username,
                f"{name!r} is reserved: the broker ACL gives that user the cloud_bridge workers' rights; "
                "a device logs in as its device id",
            )
        return self

    def profile_sections(self) -> dict[str, Any]:
        """The profile sections as the operator wrote them (only keys set explicitly), for merging."""
        return {name: getattr(self, name).model_dump(exclude_unset=True) for name in PROFILE_SECTIONS}
