"""[telemetry]: what the device reports and how often."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edged.config.base import StrictModel


class TelemetrySettings(StrictModel):
    interval_s: Annotated[float, Field(ge=1.0, le=86_400.0)] = Field(
        default=60.0, description="Seconds between telemetry reports on the device's telemetry topic."
    )
