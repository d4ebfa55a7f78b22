"""[limits]: device load beyond which AUTO requests are offloaded to the cloud."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edged.config.base import StrictModel


class LoadLimits(StrictModel):
    cpu_percent_max: Annotated[float, Field(ge=1.0, le=100.0)] = Field(
        default=90.0,
        description="CPU used by everything except edged itself (percent, all cores) above which the device "
        "is overloaded; edged's own load is judged by queue_depth_max.",
    )
    temperature_c_max: Annotated[float, Field(ge=30.0, le=120.0)] = Field(
        default=80.0, description="SoC temperature (Celsius) above which the device is overloaded."
    )
    battery_percent_min: Annotated[float, Field(ge=0.0, le=100.0)] = Field(
        default=20.0, description="Battery level (percent, when discharging) below which work is offloaded."
    )
    queue_depth_max: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=4, description="Requests waiting for a local slot above which AUTO requests are offloaded."
    )
    memory_available_mb_min: Annotated[float, Field(ge=0.0, le=1_000_000.0)] = Field(
        default=128.0, description="Available memory (MiB) below which the device is overloaded."
    )
    load_average_per_cpu_max: Annotated[float, Field(ge=0.1, le=1000.0)] = Field(
        default=4.0, description="1-minute load average per CPU core above which the device is overloaded."
    )
    sample_interval_s: Annotated[float, Field(ge=0.1, le=60.0)] = Field(
        default=2.0,
        description="Seconds between device load samples (CPU, load average, memory, temperature, battery; "
        "taken in the background, never per request).",
    )
