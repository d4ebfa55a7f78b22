"""The values the MQTT link hands out and takes in, free of paho types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One received PUBLISH with the MQTT v5 properties edged uses."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    correlation_data: bytes | None = None
    response_topic: str | None = None
    # Message Expiry Interval as the broker forwarded it: the seconds left, not the original value.
    expiry_s: int | None = None


@dataclass(frozen=True, slots=True)
class Will:
    """The Last Will the broker publishes when this client vanishes without a DISCONNECT."""

    topic: str
    payload: bytes = b""
    qos: int = 1
    retain: bool = True


class LinkPhase(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class LinkState:
    """A snapshot of the link for status reports (GetStatus, `edged status`)."""

    phase: LinkPhase
    broker: str  # the URL, never with credentials
    since: float  # time.time() of the last phase change
    rtt_ms: float | None  # smoothed broker round trip, None until measured
    last_error: str | None
    failed_attempts: int  # failed connects since the last success
    next_retry_s: float | None  # while waiting to reconnect: seconds until the next attempt

    @property
    def connected(self) -> bool:
        return self.phase is LinkPhase.CONNECTED


MessageHandler = Callable[[InboundMessage], None]
StateListener = Callable[[LinkState], None]
