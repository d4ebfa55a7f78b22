"""[escalation]: how the device hands requests to cloud_bridge workers over the broker (edged.escalation)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edged.config.base import StrictModel


class EscalationSettings(StrictModel):
    accept_timeout_s: Annotated[float, Field(ge=0.05, le=60)] = Field(
        default=2.0,
        description="How long to wait for a worker to accept a request before the cloud is "
        "declared unavailable (bounded by the request's deadline).",
    )
    max_escalations: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=64, description="Escalations waiting for a reply at once; more fail at once as unavailable."
    )
    reply_buffer: Annotated[int, Field(ge=16, le=65_536)] = Field(
        default=1024, description="Reply chunks buffered per escalation (out of order or not yet consumed)."
    )
