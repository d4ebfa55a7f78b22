"""The MQTT v5 link escalation and the fleet share: one connection, a topic dispatcher, a visible state."""

from edged.comms.dispatch import BoundedInbox, TopicDispatcher
from edged.comms.link import MqttLink
from edged.comms.messages import InboundMessage, LinkPhase, LinkState, MessageHandler, StateListener, Will
from edged.comms.threaded import ThreadLink, TopicHandler
from edged.comms.wire import NO_MATCHING_SUBSCRIBERS, puback_reason

__all__ = [
    "NO_MATCHING_SUBSCRIBERS",
    "BoundedInbox",
    "InboundMessage",
    "LinkPhase",
    "LinkState",
    "MessageHandler",
    "MqttLink",
    "StateListener",
    "ThreadLink",
    "TopicDispatcher",
    "TopicHandler",
    "Will",
    "puback_reason",
]
