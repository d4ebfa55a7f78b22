"""[broker]: the MQTT v5 link to the fleet and to cloud_bridge workers (cloud_bridge uses this schema too)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edged.config.base import KeyRuleError, StrictModel

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# Client ids and user names end up in ACL patterns (%c, %u) and topics: no MQTT wildcards, no '/'.
MQTT_NAME_PATTERN = r"^[A-Za-z0-9_\-.@]{1,128}$"
# Keys that were [broker]'s before they got their own section (edged.config.escalation).
MOVED_TO_ESCALATION = ("accept_timeout_s", "max_escalations", "reply_buffer")


class BrokerSettings(StrictModel):
    url: str | None = Field(
        default=None, description="mqtt://HOST:PORT or mqtts://HOST:PORT; unset disables the cloud link."
    )
    topic_prefix: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-/]+$")] = Field(
        default="edged/v1", description="Prefix of every topic edged uses."
    )
    client_id: Annotated[str, Field(pattern=MQTT_NAME_PATTERN)] | None = Field(
        default=None,
        description="MQTT client id; unset means the device id (edged) or the worker id (cloud_bridge), "
        "so %c ACL patterns match it.",
    )
    username: Annotated[str, Field(pattern=MQTT_NAME_PATTERN)] | None = Field(
        default=None, description="MQTT user name (the device id, for %u ACL patterns)."
    )
    password_file: Path | None = Field(
        default=None, description="File holding the MQTT password (its first line; trailing newline ignored)."
    )
    password_credential: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-.]{1,64}$")] | None = Field(
        default=None,
        description="Name of a systemd credential (LoadCredential=) holding the password, read from "
        "$CREDENTIALS_DIRECTORY.",
    )
    tls_ca_file: Path | None = Field(
        default=None,
        description="CA bundle (PEM) the broker's certificate is checked against (mqtts only); "
        "unset means the system's CAs.",
    )
    tls_cert_file: Path | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS (mqtts only; needs tls_key_file)."
    )
    tls_key_file: Path | None = Field(
        default=None, description="Private key (PEM) of tls_cert_file (mqtts only)."
    )
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = Field(
        default=30, description="MQTT keepalive; a silent broker is declared lost after 1.5 times this."
    )
    connect_timeout_s: Annotated[float, Field(ge=0.5, le=120)] = Field(
        default=5.0, description="Time allowed for the TCP (and TLS) connect and for the broker's CONNACK."
    )
    reconnect_min_s: Annotated[float, Field(ge=0.05, le=60)] = Field(
        default=0.5, description="First delay before reconnecting; doubles per failed attempt."
    )
    reconnect_max_s: Annotated[float, Field(ge=0.1, le=3600)] = Field(
        default=30.0, description="Longest delay between reconnect attempts."
    )
    max_queued_messages: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=1000, description="Outgoing messages queued at most; a publish beyond it fails at once."
    )
    max_inflight_messages: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=100, description="QoS 1 messages sent but not yet acknowledged at once."
    )
    rtt_probe_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=30.0, description="How often an idle link measures its round trip to the broker (0: never)."
    )

    @model_validator(mode="before")
    @classmethod
    def _escalation_keys_moved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in MOVED_TO_ESCALATION:
                if key in data:
                    raise KeyRuleError(key, data[key], f"moved to [escalation]: write it as escalation.{key}")
        return data

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError("scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials in the URL are not allowed: use username and password_file")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("only mqtt[s]://HOST[:PORT] is allowed (no path, query or fragment)")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return value

    @model_validator(mode="after")
    def _tls_needs_mqtts(self) -> BrokerSettings:
        tls_keys = [
            k for k in ("tls_ca_file", "tls_cert_file", "tls_key_file") if getattr(self, k) is not None
        ]
        if tls_keys and not self.use_tls:
            raise ValueError(f"{', '.join(tls_keys)} set but url {self.url!r} is not mqtts://")
        return self

    @model_validator(mode="after")
    def _cert_with_key(self) -> BrokerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self

    @model_validator(mode="after")
    def _one_password_source(self) -> BrokerSettings:
        if self.password_file is not None and self.password_credential is not None:
            raise ValueError("set password_file or password_credential, not both")
        return self

    @model_validator(mode="after")
    def _password_needs_user(self) -> BrokerSettings:
        if (self.password_file or self.password_credential) and self.username is None:
            raise ValueError("a password is set but username is not")
        return self

    @model_validator(mode="after")
    def _reconnect_bounds(self) -> BrokerSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s}) is above reconnect_max_s ({self.reconnect_max_s})"
            )
        return self

    @property
    def use_tls(self) -> bool:
        return self.url is not None and urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        """The broker host (the url must be set)."""
        host = urlsplit(self.url or "").hostname
        if not host:
            raise ValueError("broker.url is not set")
        return host

    @property
    def port(self) -> int:
        parts = urlsplit(self.url or "")
        return parts.port or DEFAULT_PORTS.get(parts.scheme, 1883)
