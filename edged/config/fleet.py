"""[fleet]: the fleet group this device belongs to and the key its profiles are signed with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from edged.config.base import StrictModel


class FleetSettings(StrictModel):
    group: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")] | None = Field(
        default=None, description="Fleet group whose profiles this device applies."
    )
    key: Path | None = Field(
        default=None, description="Ed25519 public key file (PEM) that fleet profiles must be signed with."
    )
