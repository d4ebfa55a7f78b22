"""[routing]: when AUTO and PREFER_LOCAL requests are answered locally and when they escalate."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edged.config.base import StrictModel

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class RoutingSettings(StrictModel):
    router_threshold: Probability = Field(
        default=0.5,
        description="AUTO answers locally when the pre-generation router predicts at least this probability "
        "that the local answer is acceptable.",
    )
    confidence_threshold: Annotated[float, Field(ge=-20.0, le=0.0)] = Field(
        default=-1.5,
        description="A local answer whose mean token log-probability is below this is escalated (AUTO, "
        "PREFER_LOCAL).",
    )
