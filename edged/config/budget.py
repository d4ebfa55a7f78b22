"""[budget]: how much this device may send to the cloud."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edged.config.base import StrictModel

Count = Annotated[int, Field(ge=0, le=10**12)]


class BudgetSettings(StrictModel):
    requests_per_hour: Count = Field(
        default=0, description="Cloud requests per rolling hour (0 = unlimited)."
    )
    requests_per_day: Count = Field(default=0, description="Cloud requests per rolling day (0 = unlimited).")
    tokens_per_hour: Count = Field(
        default=0, description="Cloud tokens (prompt + completion) per rolling hour (0 = unlimited)."
    )
    tokens_per_day: Count = Field(
        default=0, description="Cloud tokens (prompt + completion) per rolling day (0 = unlimited)."
    )
