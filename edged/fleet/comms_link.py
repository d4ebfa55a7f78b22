"""CommsFleetLink: the FleetLink protocol over the daemon's shared MQTT link (edged.comms.MqttLink).

The comms link runs on an asyncio loop and must be touched only from that loop's thread; the fleet agent works
on its own thread. Every call therefore hops onto the loop with call_soon_threadsafe (or runs at once when
already on it). The comms link takes its Last Will when it is built, so the daemon builds it with
`fleet_will(config)`; set_will only checks that it did.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from edged.comms import InboundMessage, LinkState, MqttLink, Will
from edged.config.daemon import DaemonConfig
from edged.errors import CloudUnavailable, ConfigError
from edged.fleet.agent import presence_will
from edged.fleet.link import MessageHandler
from edged.fleet.topics import FleetTopics

logger = logging.getLogger(__name__)


def fleet_will(config: DaemonConfig) -> Will:
    """The Last Will to build the daemon's MqttLink with when the fleet is enabled."""
    topic, payload = presence_will(
        config.device_id, config.fleet.group, FleetTopics(config.broker.topic_prefix)
    )
    return Will(topic, payload, qos=1, retain=True)


class CommsFleetLink:
    def __init__(self, link: MqttLink, loop: asyncio.AbstractEventLoop, will: Will | None) -> None:
        self._link = link
        self._loop = loop
        self._will = will
        self._loop_thread: int | None = None
        loop.call_soon_threadsafe(self._note_loop_thread)

    def _note_loop_thread(self) -> None:
        self._loop_thread = threading.get_ident()

    def _on_loop(self, call: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            call(*args)
        else:
            self._loop.call_soon_threadsafe(call, *args)

    def subscribe(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        def deliver(message: InboundMessage) -> None:
            handler(message.topic, message.payload)

        self._on_loop(self._link.subscribe, topic, deliver, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._on_loop(self._publish, topic, payload, qos, retain)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        try:
            future = self._link.publish(topic, payload, qos=qos, retain=retain)
        except CloudUnavailable as exc:
            # acks and telemetry are not queued across outages; the retained state is re-sent on connect
            logger.info("fleet message on %s not sent: %s", topic, exc)
            return
        future.add_done_callback(_consume)

    def set_will(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        if self._will != Will(topic, payload, qos=qos, retain=retain):
            raise ConfigError(
                "fleet",
                [
                    (
                        "broker",
                        self._link.broker,
                        "build the MQTT link with will=fleet_will(config) for presence",
                    )
                ],
            )

    def add_connect_listener(self, callback: Callable[[], None]) -> None:
        def on_state(state: LinkState) -> None:
            if state.connected:
                callback()

        self._on_loop(self._link.add_state_listener, on_state)


def _consume(future: asyncio.Future[int]) -> None:
    """Fire-and-forget publishes: read the outcome so asyncio never reports it as unretrieved."""
    if not future.cancelled():
        future.exception()
