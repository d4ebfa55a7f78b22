"""[broker]: the MQTT link to the fleet and to cloud_bridge workers."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from edged.config.base import StrictModel


class BrokerSettings(StrictModel):
    url: str | None = Field(
        default=None, description="mqtt://HOST:PORT or mqtts://HOST:PORT; unset disables the cloud link."
    )
    topic_prefix: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-/]+$")] = Field(
        default="edged/v1", description="Prefix of every topic edged uses."
    )

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("no host")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return value
