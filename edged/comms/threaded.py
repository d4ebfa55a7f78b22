"""ThreadLink: the one MqttLink, called from threads other than its event loop's.

MqttLink must be touched only on its loop's thread. The fleet agent works on its own worker thread and the
`edged-fleet` tool, the fleet observer, the simulator and the fleet tests are synchronous code: they reach the
link through this class, which hops every call onto the loop with call_soon_threadsafe (or makes it at once
when already on the loop). It is not a second client: URL, TLS, password, reconnect, topic matching and
handler semantics (one handler per filter; a second subscribe to a filter replaces the first) are the link's.

Two ways to build it:
- `ThreadLink.over(link, loop, will)`: a link the daemon runs on its own loop. That link took its Last Will
  when it was built (a will set through a hop could reach the loop after the first connect), so set_will()
  only checks it is the same one.
- `ThreadLink.own(settings, client_id)`: a link on a loop this class runs on one thread ("edged-mqtt"),
  started by start() and ended by stop(); set_will() before start() sets the will of the first connect.

Handlers and connect listeners run on the loop's thread, inside paho's read callback: they must only record
or queue, never block or wait for a publish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from edged.comms.link import MqttLink
from edged.comms.messages import InboundMessage, LinkState, Will
from edged.config.broker import BrokerSettings
from edged.errors import CloudUnavailable, ConfigError

logger = logging.getLogger(__name__)

TopicHandler = Callable[[str, bytes], None]  # (topic, payload), on the link's loop: must not block
T = TypeVar("T")

# A publish the broker refused has a PUBACK reason code of 0x80 or above.
REFUSED_FROM = 0x80


class ThreadLink:
    def __init__(
        self, link: MqttLink, loop: asyncio.AbstractEventLoop | None, will: Will | None, *, owned: bool
    ) -> None:
        self.link = link
        self._loop = loop
        self._will = will
        self._owned = owned
        self._thread: threading.Thread | None = None

    @classmethod
    def over(cls, link: MqttLink, loop: asyncio.AbstractEventLoop, will: Will | None) -> ThreadLink:
        """The link `loop` runs (the daemon's), built with Last Will `will`."""
        return cls(link, loop, will, owned=False)

    @classmethod
    def own(cls, settings: BrokerSettings, client_id: str, *, password: str | None = None) -> ThreadLink:
        """A new link on a loop of its own, run on one thread between start() and stop()."""
        return cls(MqttLink(settings, client_id, password=password), None, None, owned=True)

    @property
    def client_id(self) -> str:
        return self.link.client_id

    @property
    def connected(self) -> bool:
        return self.link.snapshot().connected  # one immutable state: safe to read from any thread

    # -- what the fleet agent, observer and simulator call ----------------------------------------------

    def subscribe(self, topic: str, handler: TopicHandler, qos: int = 1) -> None:
        """Deliver messages matching `topic` (an MQTT filter) to `handler`, now and after every reconnect."""

        def deliver(message: InboundMessage) -> None:
            handler(message.topic, message.payload)

        self._on_loop(self.link.subscribe, topic, deliver, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Queue a message; never blocks. Not queued across outages: dropped (logged) while the link is down
        (the agent re-sends its retained state on every connect)."""
        self._on_loop(self._publish, topic, payload, qos, retain)

    def set_will(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        """The Last Will the broker publishes if this connection is lost (see the module's docstring)."""
        will = Will(topic, payload, qos=qos, retain=retain)
        if self._owned and self._thread is None:
            self.link.set_will(will)
            self._will = will
            return
        if self._will != will:
            raise ConfigError(
                "fleet",
                [
                    (
                        "broker",
                        self.link.broker,
                        "build the MQTT link with will=fleet_will(config) for presence",
                    )
                ],
            )

    def add_connect_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the loop after every successful connect (at once if connected now)."""

        def on_state(state: LinkState) -> None:
            if state.connected:
                callback()

        def register() -> None:
            self.link.add_state_listener(on_state)
            if self.link.is_up():
                callback()

        self._on_loop(register)

    # -- lifecycle and blocking calls (never from the loop's own thread) ---------------------------------

    def start(self) -> None:
        """Run the owned link's loop on its thread and begin connecting; does not wait."""
        if not self._owned or self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="edged-mqtt", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop
        try:
            self._call(self.link.start(), self.link.settings.connect_timeout_s)
        except BaseException:
            # a bad password or TLS file (ConfigError): leave no loop thread behind
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join()
            self._thread = None
            self._loop = None
            raise

    def wait_connected(self, timeout_s: float) -> None:
        """Block until connected (the first connect with its subscriptions granted); CloudUnavailable naming
        the broker and the last error if not within `timeout_s`, SubscriptionRefused if one was refused."""
        if not self._call(self._connected_within(timeout_s), timeout_s + 1.0):
            raise CloudUnavailable(
                f"broker {self.link.broker} not reachable within {timeout_s:g} s: "
                f"{self.link.snapshot().last_error or 'not connected yet'}"
            )

    def publish_and_wait(
        self, topic: str, payload: bytes, timeout_s: float, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and wait until the broker acknowledged it; CloudUnavailable if it did not in time."""
        self._call(self._publish_acked(topic, payload, qos, retain, timeout_s), timeout_s + 1.0)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Owned link: DISCONNECT (no Last Will), then end the loop and its thread. A link over the daemon's
        loop is the daemon's to stop."""
        thread, loop = self._thread, self._loop
        if not self._owned or thread is None or loop is None:
            return
        try:
            self._call(self.link.stop(timeout_s), timeout_s * 2)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
            self._thread = None
            self._loop = None

    # -- on the loop ------------------------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        try:
            future = self.link.publish(topic, payload, qos=qos, retain=retain)
        except CloudUnavailable as exc:
            logger.info("MQTT message on %s not sent: %s", topic, exc)
            return
        future.add_done_callback(_consume)

    async def _publish_acked(
        self, topic: str, payload: bytes, qos: int, retain: bool, timeout_s: float
    ) -> None:
        future = self.link.publish(topic, payload, qos=qos, retain=retain)
        try:
            async with asyncio.timeout(timeout_s):
                reason = await future
        except TimeoutError:
            raise CloudUnavailable(f"publish to {topic} not acknowledged within {timeout_s:g} s") from None
        if reason >= REFUSED_FROM:
            raise CloudUnavailable(
                f"broker {self.link.broker} refused the publish to {topic}: reason {reason}"
            )

    async def _connected_within(self, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                if await self.link.wait_first_connect():
                    return True
        except TimeoutError:
            return False
        return await self.link.wait_up(max(0.0, deadline - loop.time()))

    # -- hops -------------------------------------------------------------------------------------------

    def _on_loop(self, call: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if (
            loop is None or _running_loop() is loop
        ):  # an owned link not started yet: nothing runs on it, call now
            call(*args)
        else:
            loop.call_soon_threadsafe(call, *args)

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float) -> T:
        loop = self._loop
        if loop is None or _running_loop() is loop:
            coroutine.close()
            raise RuntimeError("ThreadLink's blocking calls need a started link, off its loop's thread")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise CloudUnavailable(
                f"MQTT link to {self.link.broker}: no answer within {timeout_s:g} s"
            ) from None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _consume(future: asyncio.Future[int]) -> None:
    """Fire-and-forget publishes: read the outcome so asyncio never reports it as unretrieved."""
    if not future.cancelled():
        future.exception()
