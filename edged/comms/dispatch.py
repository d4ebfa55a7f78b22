"""Topic -> handler dispatch, and a bounded inbox for consumers that want to `async for` their messages.

Handlers run on the link's event loop, inside paho's read callback: they must return at once (decode, queue,
resolve a future), never block and never wait for a publish.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from edged.comms.messages import InboundMessage, MessageHandler

logger = logging.getLogger(__name__)

SHARE_PREFIX = "$share/"


def match_filter(topic_filter: str) -> str:
    """The filter a received topic is matched against: `$share/{group}/f` delivers topics matching `f`."""
    if topic_filter.startswith(SHARE_PREFIX):
        _group, _, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
        return rest
    return topic_filter


def topic_matches(levels: tuple[str, ...], topic: str) -> bool:
    """MQTT matching of a topic against a filter split into levels ('+' one level, '#' the rest, even none).

    paho's topic_matches_sub builds a matcher tree per call: ~20 us, on every message, per subscription."""
    parts = topic.split("/")
    if parts[0].startswith("$") and levels[0] in ("+", "#"):
        return False  # $-topics never match a leading wildcard
    for index, level in enumerate(levels):
        if level == "#":
            return True
        if index >= len(parts) or (level != "+" and level != parts[index]):
            return False
    return len(parts) == len(levels)


@dataclass(frozen=True, slots=True)
class Subscription:
    topic_filter: str
    qos: int
    handler: MessageHandler
    levels: tuple[str, ...] = ()


class TopicDispatcher:
    """The subscriptions a link holds (re-made on every connect) and the handler each message goes to."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, Subscription] = {}
        self.handler_errors = 0
        self.unmatched = 0

    def add(self, topic_filter: str, qos: int, handler: MessageHandler) -> Subscription:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        subscription = Subscription(topic_filter, qos, handler, tuple(match_filter(topic_filter).split("/")))
        self._subscriptions[topic_filter] = subscription
        return subscription

    def remove(self, topic_filter: str) -> bool:
        return self._subscriptions.pop(topic_filter, None) is not None

    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions.values())

    def dispatch(self, message: InboundMessage) -> int:
        """Call every handler whose filter matches; a failing handler is logged and never reaches paho."""
        called = 0
        for subscription in list(self._subscriptions.values()):
            if not topic_matches(subscription.levels, message.topic):
                continue
            called += 1
            try:
                subscription.handler(message)
            except Exception:
                self.handler_errors += 1
                logger.exception(
                    "handler for %s failed on a message on %s", subscription.topic_filter, message.topic
                )
        if not called:
            self.unmatched += 1
            logger.debug("no handler for a message on %s", message.topic)
        return called


class BoundedInbox:
    """A handler queueing messages for an `async for` consumer; when full, new messages are dropped (counted).

    Use it as `link.subscribe(filter, inbox.put)` and consume with `async for message in inbox`.
    """

    def __init__(self, maxsize: int, name: str = "inbox") -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self._items: deque[InboundMessage] = deque()
        self._maxsize = maxsize
        self._name = name
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def put(self, message: InboundMessage) -> None:
        if self._closed:
            return
        if len(self._items) >= self._maxsize:
            self.dropped += 1
            logger.warning(
                "%s full (%d messages): dropped a message on %s", self._name, self._maxsize, message.topic
            )
            return
        self._items.append(message)
        self._ready.set()

    def close(self) -> None:
        """End the consumer's `async for` once the queued messages are read."""
        self._closed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> InboundMessage | None:
        """The next message, or None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    async def __aiter__(self) -> AsyncIterator[InboundMessage]:
        while (message := await self.get()) is not None:
            yield message
