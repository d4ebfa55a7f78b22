"""The transport the fleet agent needs: four calls, so any MQTT link (edged.comms, MqttLink) can carry it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

MessageHandler = Callable[[str, bytes], None]  # (topic, payload); called on the link's thread: must not block


class FleetLink(Protocol):
    """An MQTT connection that re-subscribes every registered topic on every (re)connect."""

    def subscribe(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        """Deliver messages matching `topic` (MQTT filter) to `handler`, now and after every reconnect."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Queue a message; never blocks (callable from the link's own callbacks)."""

    def set_will(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        """The Last Will the broker publishes if this connection is lost; takes effect at the next connect."""

    def add_connect_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the link's thread) after every successful connect, after re-subscribing."""
