"""The shared MqttLink as the fleet agent's transport: edged.fleet.link.FleetLink's four calls, on this link.

One daemon, one MQTT connection: the fleet agent and the EscalationClient subscribe on the same MqttLink.
Handlers run on the daemon's event loop (inside paho's read callback): the agent's rule "must not block"
holds unchanged. A publish while the link is down is dropped with a warning (the agent republishes its
state on every connect), where a bare paho client would queue it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edged.comms.link import MqttLink
from edged.comms.messages import InboundMessage, LinkState, Will
from edged.errors import CloudUnavailable

logger = logging.getLogger(__name__)


class SharedFleetLink:
    def __init__(self, link: MqttLink) -> None:
        self._link = link

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None], qos: int = 1) -> None:
        def deliver(message: InboundMessage) -> None:
            handler(message.topic, message.payload)

        self._link.subscribe(topic, deliver, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        try:
            self._link.publish(topic, payload, qos=qos, retain=retain)
        except CloudUnavailable as exc:
            logger.warning("fleet message on %s not sent: %s", topic, exc)

    def set_will(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        self._link.set_will(Will(topic, payload, qos, retain))

    def add_connect_listener(self, callback: Callable[[], None]) -> None:
        def on_state(state: LinkState) -> None:
            if state.connected:
                callback()

        self._link.add_state_listener(on_state)
