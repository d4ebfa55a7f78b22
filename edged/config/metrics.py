"""[metrics]: the Prometheus endpoint."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edged.config.base import StrictModel


class MetricsSettings(StrictModel):
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, description="Serve Prometheus metrics on this port (unset: no metrics endpoint)."
    )
    host: str = Field(
        default="127.0.0.1", description="Address the metrics endpoint binds (loopback by default)."
    )
