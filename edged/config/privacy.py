"""[privacy]: which data may leave the device, and how."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from edged.config.base import StrictModel


class DataPolicy(StrEnum):
    LOCAL_ONLY = "LOCAL_ONLY"
    REDACT = "REDACT"
    ALLOW = "ALLOW"


class PrivacySettings(StrictModel):
    sensitive_policy: DataPolicy = Field(
        default=DataPolicy.LOCAL_ONLY,
        description="Policy for requests the caller marks sensitive (the 'sensitive' data class).",
    )
