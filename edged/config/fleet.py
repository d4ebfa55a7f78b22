"""[fleet]: the fleet group this device belongs to and the key its profiles are signed with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from edged.config.base import StrictModel

KiB = 1024
DAY_S = 86_400
GROUP_PATTERN = r"^[A-Za-z0-9_\-]+$"


class FleetSettings(StrictModel):
    group: Annotated[str, Field(min_length=1, max_length=64, pattern=GROUP_PATTERN)] | None = Field(
        default=None, description="Fleet group whose profiles this device applies."
    )
    key: Path | None = Field(
        default=None, description="Ed25519 public key file (PEM) that fleet profiles must be signed with."
    )
    max_envelope_bytes: Annotated[int, Field(ge=1 * KiB, le=1024 * KiB)] = Field(
        default=64 * KiB,
        description="Largest signed profile or key announcement accepted, in bytes; larger ones are rejected "
        "unparsed with reason 'oversized'.",
    )
    max_clock_skew_s: Annotated[int, Field(ge=0, le=30 * DAY_S)] = Field(
        default=DAY_S,
        description="How far ahead of this device's clock a message's issued_at may be, in seconds; one "
        "issued further in the future is rejected with reason 'future_dated'.",
    )
    device_profiles: bool = Field(
        default=True,
        description="Also apply profiles pushed to this device alone (they override the group's key by key).",
    )
    key_rotation: bool = Field(
        default=True,
        description="Accept new signing keys announced in a message signed by a currently trusted key.",
    )
    queue_size: Annotated[int, Field(ge=8, le=10_000)] = Field(
        default=64, description="Fleet messages that may wait for the agent; more are dropped with a warning."
    )

    @model_validator(mode="after")
    def _group_needs_key(self) -> FleetSettings:
        if self.group is not None and self.key is None:
            raise ValueError(f"group {self.group!r} is set but key is not: name the fleet's public key file")
        return self

    @property
    def enabled(self) -> bool:
        """A device joins the fleet once it trusts a signing key."""
        return self.key is not None
